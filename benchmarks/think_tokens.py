"""Does adding `<think>`/`</think>` as tokens of their own (`model.think_tokens`) change the
model a run starts from? Measured on a preset's untrained model, with and without the tokens:
the held-out evaluation r1 runs before training (pass@1 with its standard error, format rate),
and the log-likelihood of the format's target text for every held-out problem under the run's
prompt (summed over the text, so that the two tokenizations are compared on the same text).

    python benchmarks/think_tokens.py --preset smollm2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from r1.config import build_config, read_yaml
from r1.presets import preset_path
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
    for think in (False, True):
        cfg = build_config(read_yaml(preset_path(args.preset)),
                           ["tracking.progress=false", f"model.think_tokens={str(think).lower()}"])
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            trainer = GRPOTrainer(cfg, out)
            trainer.setup()
            before = trainer.evaluate_heldout("before")
            ll = target_loglik(trainer)
            rows[think] = (before, ll, len(trainer.tokenizer), time.perf_counter() - t0)
    print(f"preset {args.preset}: the untrained model, {len(rows[False][1])} held-out problems")
    print("| tokens | vocabulary | pass@1 before (± s.e.) | format | log-lik of the target text (mean, nats) |")
    print("|---|---|---|---|---|")
    for think, (before, ll, vocab, _) in rows.items():
        print(f"| {'own <think>, </think>' if think else 'pieces (as shipped)'} | {vocab} | "
              f"{100 * before['pass@1']:.1f} ± {100 * before['pass@1_se']:.1f}% | "
              f"{100 * before['format_rate']:.1f}% | {statistics.fmean(ll):.2f} |")
    diff = [b - a for a, b in zip(rows[False][1], rows[True][1])]
    se = statistics.stdev(diff) / len(diff) ** 0.5
    print(f"paired log-likelihood difference (own tokens - pieces): {statistics.fmean(diff):+.2f} ± {se:.2f} nats "
          f"per problem")


if __name__ == "__main__":
    main()
