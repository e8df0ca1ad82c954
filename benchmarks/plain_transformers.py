"""Does a trained model stop by itself outside r1? A run's `model/` loaded with plain
transformers (`AutoModelForCausalLM.generate`, its saved generation_config.json, no stop
strings) against `r1 eval --from-run` (r1's engine and the run's stop strings) on the run's
own held-out problems, side by side in one run:

* EOS rate: the share of plain-transformers completions that end with an end-of-sequence
  id within the token limit (the model stopped by itself);
* pass@1 (strict: the answer inside <answer>) of both, and their difference.

r1's prompt rendering (`PromptFormat`, the run's template) is the one r1 thing the plain
side uses: the prompt is part of what the model was trained on.

    python benchmarks/plain_transformers.py RUN_DIR [--samples 4] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def r1_eval(run: Path, samples: int, max_new_tokens: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "r1", "eval", "--from-run", str(run), "--model", str(run / "model"),
               "--samples", str(samples), "--max-new-tokens", str(max_new_tokens), "--out", tmp, "--no-progress"]
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if res.returncode:
            sys.exit(res.stdout[-2000:] + res.stderr[-2000:])
        return json.loads((Path(tmp) / "summary.json").read_text())["metrics"]


def plain(run: Path, samples: int, max_new_tokens: int, greedy: bool, batch: int = 32, examples=None) -> dict:
    """EOS rate and pass@1 of the run's model through `generate` on `examples` (default: the
    run's held-out problems), prompted as in training."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from r1.config import load_config
    from r1.data.prompts import PromptFormat
    from r1.eval.runner import config_settings

    rc = load_config(run / "config.yaml")
    task, heldout, _, _ = config_settings(rc, str(run))
    examples = heldout if examples is None else examples
    tok = AutoTokenizer.from_pretrained(run / "model", padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(run / "model", dtype=torch.bfloat16).eval()
    config = GenerationConfig.from_pretrained(run / "model")
    config.max_new_tokens = max_new_tokens
    if greedy:
        config.do_sample, config.temperature, config.top_p = False, None, None
    eos = set(config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id])
    prompt = PromptFormat.of(rc, task.answer_hint)
    prefill = prompt.prefill
    k = 1 if greedy else samples
    rows = [ex for ex in examples for _ in range(k)]
    ended = correct = 0
    torch.manual_seed(0)
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        enc = tok([prompt.render(ex.question, tok).text for ex in chunk], return_tensors="pt", padding=True,
                  add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, generation_config=config)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        texts = []
        for ids in new:
            cut = next((i for i, t in enumerate(ids) if t in eos), None)
            ended += cut is not None
            texts.append(prefill + tok.decode(ids[:cut], skip_special_tokens=True))
        correct += sum(task.verify_batch([task.extract(t) for t in texts], chunk))
    return {"eos_rate": ended / len(rows), "pass@1": correct / len(rows), "completions": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    a = ap.parse_args()
    t0 = time.perf_counter()
    ours = r1_eval(a.run, a.samples, a.max_new_tokens)
    sampled = plain(a.run, a.samples, a.max_new_tokens, greedy=False)
    greedy = plain(a.run, a.samples, a.max_new_tokens, greedy=True)
    print(f"{'':34}{'EOS rate':>10}{'pass@1':>10}")
    print(f"{'r1 eval --from-run (stop strings)':34}{'':>10}{ours['pass@1']:>10.3f}")
    print(f"{'transformers, saved config':34}{sampled['eos_rate']:>10.3f}{sampled['pass@1']:>10.3f}")
    print(f"{'transformers, greedy':34}{greedy['eos_rate']:>10.3f}{greedy['pass@1']:>10.3f}")
    print(f"difference in pass@1 (saved config - r1 eval): {100 * (sampled['pass@1'] - ours['pass@1']):+.1f} points; "
          f"{time.perf_counter() - t0:.0f} s")
    print(json.dumps({"r1_eval_pass@1": ours["pass@1"], "plain": sampled, "plain_greedy": greedy,
                      "samples": a.samples, "max_new_tokens": a.max_new_tokens}))


if __name__ == "__main__":
    main()
