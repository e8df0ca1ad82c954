"""Held-out evaluation with the training prompts and the task's own verifier."""

from __future__ import annotations

import re
import statistics

from r1.data.answers import extract_answer
from r1.data.prompts import PromptFormat, ends_with_eos, is_strict_format, judge_texts
from r1.eval.metrics import per_problem_mean_se
from r1.rollout.episodes import episode_metrics
from r1.types import SamplingParams

REFLECTION_RE = re.compile(
    r"\b(wait|verify|verified|double[- ]check|check again|re-?check|let me check|hmm|mistake)\b",
    re.IGNORECASE,
)


def has_reflection(text: str) -> bool:
    """True when a completion uses a reflection word ("wait", "verify", "check again"...)."""
    return bool(REFLECTION_RE.search(text))


def evaluate(engine, prompt: PromptFormat, tokenizer, task, examples, *, samples: int, temperature: float,
             top_p: float, max_new_tokens: int, stop: tuple[str, ...], seed: int,
             batch_size: int = 64, stop_grace: int = 0) -> dict:
    """pass@1 averaged over `samples` per problem, the strict format rate, the lenient
    accuracy (last number / boxed anywhere, tags or not) and lengths, the first three with
    their standard errors over problems (`*_se`); plus every sample.
    With `stop_grace` > 0 (and an engine that says which ids end a sequence) also the share
    of samples that ended with EOS by themselves (`eos_rate`); through an engine with tools,
    the episodes' tool use (`rollout.episodes.episode_metrics`)."""
    eos = getattr(engine, "eos_ids", None)
    rows = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        ids = [prompt.ids(ex.question, tokenizer) for ex in chunk]
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature,
                                top_p=top_p, stop=stop, seed=seed + start, stop_grace=stop_grace)
        gen = engine.generate(ids, samples, params)
        prefill = prompt.prefill
        # judged as training judges them: with a grace, only up to the stop string, and a
        # sample that wrote on after it fails the format
        completions, ran_on = judge_texts(gen.texts, gen.completion_ids, stops=stop, eos=eos or (),
                                          grace=stop_grace if eos else 0, prefill=prefill)
        exs = [chunk[i // samples] for i in range(len(completions))]
        answers = [task.extract(c) for c in completions]
        correct = task.verify_batch(answers, exs)
        lenient = task.verify_batch([extract_answer(c, fallback="last_number") for c in completions], exs) \
            if task.lenient else correct
        for i, (ex, completion) in enumerate(zip(exs, completions)):
            rows.append({
                "id": ex.id, "sample": i % samples, "question": ex.question, "gold": ex.answer,
                "completion": prefill + gen.texts[i], "answer": answers[i], "correct": bool(correct[i]),
                "lenient_correct": bool(lenient[i]),
                "format": is_strict_format(completion) and not ran_on[i], "tokens": len(gen.completion_ids[i]),
                "eos": bool(eos) and ends_with_eos(gen.completion_ids[i], eos),
                "reflection": has_reflection(completion),
                **({"episode": gen.episodes[i]} if gen.episodes else {}),  # an engine with tools
            })
    n = max(len(rows), 1)
    lengths = [r["tokens"] for r in rows] or [0]
    errors = {f"{name}_se": per_problem_mean_se(rows, key)[1]
              for name, key in (("pass@1", "correct"), ("format_rate", "format"), ("lenient_pass@1", "lenient_correct"))}
    return {
        "pass@1": sum(r["correct"] for r in rows) / n,
        "format_rate": sum(r["format"] for r in rows) / n,
        "lenient_pass@1": sum(r["lenient_correct"] for r in rows) / n,
        **errors,
        "response_length_mean": statistics.fmean(lengths),
        "reflection_rate": sum(r["reflection"] for r in rows) / n,
        **({"eos_rate": sum(r["eos"] for r in rows) / n} if stop_grace > 0 and eos else {}),
        **(episode_metrics([r["episode"] for r in rows]) if rows and "episode" in rows[0] else {}),
        "problems": len(examples),
        "samples_per_problem": samples,
        "rows": rows,
    }
