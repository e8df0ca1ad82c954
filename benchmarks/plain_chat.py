"""A trained run's model/ as another tool sees it: plain transformers, the folder's own chat
template, the bare held-out questions of the run (no hand-made prefix), greedy, no stop
strings; accuracy by the task's verifier and the share ending with EOS.

    python benchmarks/plain_chat.py runs/zero-smollm2
"""
import sys, torch
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
from r1.data.tasks import load_run
run = Path(sys.argv[1])
rc, task = load_run(run)
_, held = task.splits(rc.task.train_size, rc.task.heldout_size)
tok = AutoTokenizer.from_pretrained(run / "model"); tok.padding_side = "left"
model = AutoModelForCausalLM.from_pretrained(run / "model", dtype=torch.bfloat16).eval()
right = eos = 0
for i in range(0, len(held), 25):
    batch = held[i:i + 25]
    texts = [tok.apply_chat_template([{"role": "user", "content": ex.question}], tokenize=False, add_generation_prompt=True) for ex in batch]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=96, pad_token_id=tok.pad_token_id)
    for ex, row in zip(batch, out[:, enc["input_ids"].shape[1]:]):
        text = tok.decode(row, skip_special_tokens=False)
        eos += int(tok.eos_token_id in row.tolist())
        answer = "<think>\n" + tok.decode(row, skip_special_tokens=True)
        right += int(task.score_batch([answer], [ex])[0])
print(f"plain transformers, chat template, greedy: {right}/{len(held)} correct, EOS {eos}/{len(held)}")
print("example:", repr(texts[0][-120:]), "->", repr(text[:120]))
