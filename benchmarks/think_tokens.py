"""Does adding `<think>`/`</think>` as tokens of their own (`model.think_tokens`) change the
model a run starts from? Measured on a preset's untrained model without the tokens, with them
as their pieces' mean (the rows unfitted), and with the rows fitted as r1 adds them:
the held-out evaluation r1 runs before training (pass@1 with its standard error, format rate),
and the log-likelihood of the format's target text for every held-out problem under the run's
prompt (summed over the text, so that the two tokenizations are compared on the same text).

    python benchmarks/think_tokens.py --preset smollm2
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time

import torch

from r1.config import build_config, read_yaml
from r1.models import add_think_tokens
from r1.presets import preset_path
from r1.trainers import policy
from r1.trainers.grpo import GRPOTrainer


def target_loglik(trainer: GRPOTrainer) -> list[float]:
    """log p(target | prompt) per held-out problem: the answer the format asks for, after the
    prompt with its forced `<think>` opening, summed over the target's tokens."""
    model, tok, prompt = trainer.policy.model, trainer.tokenizer, trainer.prompt
    out = []
    for ex in trainer.heldout:
        text = prompt.render(ex.question, tok).text
        body = f"{ex.question.removeprefix('What is ').rstrip('?')} = {ex.answer} </think> <answer> {ex.answer} </answer>"
        p, full = (tok(t, add_special_tokens=False)["input_ids"] for t in (text, text + body))
        assert full[: len(p)] == p, "the target's first token merged with the prompt's last"
        with torch.no_grad():
            logp = model(torch.tensor([full])).logits[0, :-1].float().log_softmax(-1)
        targets = torch.tensor(full[len(p):])
        out.append(float(logp[len(p) - 1:].gather(-1, targets[:, None]).sum()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smollm2")
    args = ap.parse_args()
    rows = {}
    variants = {"pieces (as the tokenizer ships)": (False, None),
                "own tokens, rows the mean of the first and last piece": (True, 0),
                "own tokens, rows fitted (as r1 adds them)": (True, None)}
    for name, (think, fit_steps) in variants.items():
        cfg = build_config(read_yaml(preset_path(args.preset)),
                           ["tracking.progress=false", f"model.think_tokens={str(think).lower()}"])
        policy.add_think_tokens = add_think_tokens if fit_steps is None else \
            functools.partial(add_think_tokens, fit_steps=fit_steps)
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            trainer = GRPOTrainer(cfg, out)
            trainer.setup()
            setup_s = time.perf_counter() - t0
            before = trainer.evaluate_heldout("before")
            rows[name] = (before, target_loglik(trainer), len(trainer.tokenizer), setup_s)
    base = next(iter(rows.values()))[1]
    print(f"preset {args.preset}: the untrained model, {len(base)} held-out problems")
    print("| tokens | vocabulary | set-up | pass@1 before (± s.e.) | format | log-lik of the target text "
          "(mean, nats) | paired change (± s.e.) |")
    print("|---|---|---|---|---|---|---|")
    for name, (before, ll, vocab, setup_s) in rows.items():
        diff = [b - a for a, b in zip(base, ll)]
        change = "" if ll is base else \
            f"{statistics.fmean(diff):+.2f} ± {statistics.stdev(diff) / len(diff) ** 0.5:.2f}"
        print(f"| {name} | {vocab} | {setup_s:.0f} s | {100 * before['pass@1']:.1f} ± {100 * before['pass@1_se']:.1f}% | "
              f"{100 * before['format_rate']:.1f}% | {statistics.fmean(ll):.2f} | {change} |")


if __name__ == "__main__":
    main()
