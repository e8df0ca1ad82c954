"""A run's model exported to GGUF (`r1 export RUN --gguf`) and asked in llama.cpp
(llama-cpp-python) against the same model in transformers (bf16): the first N held-out
problems of the run as bare questions through the model's own chat template, greedy, no stop
strings; accuracy by the run's verifier, with its standard error, and how often the two answer
alike. Run it where llama-cpp-python and the converter are installed (`make gguf-env`):

    .venv-gguf/bin/python benchmarks/gguf_accuracy.py runs/zero-smollm2 --quant f16 q8_0
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1.eval.runner import from_run_settings


def score(task, examples, texts, prefill: str) -> list[int]:
    return [int(x) for x in task.score_batch([prefill + t for t in texts], examples)]


def line(name: str, right: list[int]) -> str:
    p = statistics.fmean(right)
    return f"| {name} | {100 * p:.1f}% ± {100 * (p * (1 - p) / len(right)) ** 0.5:.1f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--quant", nargs="+", default=["f16", "q8_0"])
    ap.add_argument("--problems", type=int, default=50)
    ap.add_argument("--max-tokens", type=int, default=96)
    args = ap.parse_args()
    import llama_cpp

    run = Path(args.run)
    task, held, _, _ = from_run_settings(run)  # the run's held-out problems, as r1 eval --from-run
    held = held[: args.problems]
    folder = run / "model"
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    opening = tok.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False)
    prefill = "<think>\n" if opening.endswith("<think>\n") else ""  # the template opens the answer
    hf_texts = []
    for ex in held:
        ids = tok.apply_chat_template([{"role": "user", "content": ex.question}], add_generation_prompt=True,
                                      tokenize=False)
        ids = tok(ids, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, do_sample=False, max_new_tokens=args.max_tokens, pad_token_id=tok.pad_token_id)
        hf_texts.append(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    rows = {"transformers, bf16": score(task, held, hf_texts, prefill)}
    same = {}
    with tempfile.TemporaryDirectory() as tmp:
        for quant in args.quant:
            subprocess.run([sys.executable, "-m", "r1.cli.main", "export", str(run), "--gguf", "--quant", quant,
                            "--to", str(Path(tmp) / quant)], check=True, capture_output=True)
            path = next((Path(tmp) / quant).glob("*.gguf"))
            llm = llama_cpp.Llama(str(path), n_ctx=2048, verbose=False, seed=0)
            texts = [llm.create_chat_completion([{"role": "user", "content": ex.question}], temperature=0.0,
                                               max_tokens=args.max_tokens)["choices"][0]["message"]["content"] or ""
                     for ex in held]
            rows[f"llama.cpp, GGUF {quant}"] = score(task, held, texts, prefill)
            same[quant] = sum(a.strip() == b.strip() for a, b in zip(texts, hf_texts))
    print(f"{run}: the first {len(held)} held-out problems, bare questions through the model's chat template, "
          f"greedy, at most {args.max_tokens} tokens")
    print("| model | correct (± s.e.) |\n|---|---|")
    for name, right in rows.items():
        print(line(name, right))
    base = rows["transformers, bf16"]
    for quant in args.quant:
        diff = [a - b for a, b in zip(rows[f"llama.cpp, GGUF {quant}"], base)]
        print(f"GGUF {quant} - bf16: {100 * statistics.fmean(diff):+.1f} points (paired), "
              f"the same text in {same[quant]}/{len(held)}")


if __name__ == "__main__":
    main()
