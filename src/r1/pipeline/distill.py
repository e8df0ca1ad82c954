"""`r1 distill RECIPE --out DIR`: generate reasoning traces with a teacher, keep the verified
and readable ones, fine-tune a student on them — R1-Distill in one resumable command.

    DIR/generate/                the teacher's samples (`r1 generate`'s folder, resumable by batches)
    DIR/filter/                  rejection sampling (`r1 filter`'s folder: kept.jsonl, dropped.jsonl)
    DIR/sft/                     the SFT run; the student at DIR/sft/model
    DIR/eval/before, after       optional: the student before and after, on a run's held-out set
    DIR/summary.json             counts and the before/after numbers

Recipe sections: `generate` (GenerateConfig fields: model | api_base, data | from_run, ...),
`filter` (FilterConfig fields), `sft` (an `r1 sft` recipe without data), `eval` (optional:
`from_run`, `samples`, `max_new_tokens`, `limit`). A run continued with `--resume` goes on
where it stopped: a finished stage is not redone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from r1.config import FilterConfig, apply_overrides, build_sft_config, merge
from r1.data.prompts import PromptFormat
from r1.errors import R1Error, describe_validation_error
from r1.eval.runner import EvalConfig, from_run_settings, run_eval
from r1.pipeline.filter import filter_to
from r1.pipeline.generate import GenerateConfig, run_generate, student_prompt
from r1.pipeline.recipes import DistillEval, DistillRecipe, parse
from r1.runs import read_jsonl, write_jsonl_atomic


def parse_recipe(recipe: dict[str, Any], overrides: list[str] | None = None, source: str = ""):
    """(seed, GenerateConfig, FilterConfig, SFTConfig, eval section), each checked; the SFT
    data path is filled in by `run_distill`."""
    typed = parse(DistillRecipe, apply_overrides(merge({}, recipe), overrides or []), source or "distill recipe")
    seed = typed.seed
    try:
        gen_cfg = GenerateConfig(**{"seed": seed, **typed.generate})
    except ValidationError as e:
        raise R1Error(f"{source}: {describe_validation_error(e, prefix='generate')}") from None
    try:
        filt_cfg = FilterConfig(**typed.filter)
    except ValidationError as e:
        raise R1Error(f"{source}: {describe_validation_error(e, prefix='filter')}") from None
    sft_cfg = build_sft_config(merge({"seed": seed}, typed.sft), source=f"{source}: sft")
    return seed, gen_cfg, filt_cfg, sft_cfg, typed.eval


def run_distill(recipe: dict[str, Any], out: str | Path, overrides: list[str] | None = None,
                progress: bool = True, source: str = "", extra_data: str | None = None,
                resume: bool = False, prompt_for: Callable[[Any], PromptFormat] | None = None) -> dict:
    """`prompt_for(tokenizer)`: the prompt the student is sampled with, written into its chat
    template (a pipeline's shared prompt); by default the teacher's (`student_prompt`)."""
    seed, gen_cfg, filt_cfg, sft_cfg, ev = parse_recipe(recipe, overrides, source)
    out = Path(out)
    if (out / "generate").is_dir() and not resume:
        raise R1Error(f"{out} already holds a distillation: pass --resume to continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)

    # 1. generate (its own folder, continued batch by batch)
    run_generate(gen_cfg, out / "generate", progress=progress, resume=True)
    # 2. filter (cheap: always redone from the samples)
    res, n = filter_to(out / "generate", out / "filter", filt_cfg)
    counts = res.counts()
    if not res.kept:
        raise R1Error(f"the filter kept none of {n} samples ({counts}); see {out / 'filter'}")
    kept_path = out / "filter" / "kept.jsonl"
    # 3. sft (on the kept samples, mixed with general conversations when given)
    train_path = kept_path
    if extra_data:
        general = read_jsonl(extra_data)
        train_path = out / "filter" / "mixed.jsonl"
        write_jsonl_atomic(train_path, res.kept + general)
        counts["general"] = len(general)
    sft_cfg = sft_cfg.model_copy(update={"data": sft_cfg.data.model_copy(update={"path": str(train_path)})})
    sft_dir = out / "sft"
    from r1.trainers import checkpoint as ckpt
    from r1.trainers.sft import SFTTrainer

    if (sft_dir / "summary.json").is_file() and (sft_dir / "model" / "config.json").is_file():
        sft_summary = json.loads((sft_dir / "summary.json").read_text())
    else:
        started = (sft_dir / "checkpoints").exists() and ckpt.latest_checkpoint(sft_dir / "checkpoints") is not None
        sft_summary = SFTTrainer(sft_cfg, sft_dir, resume=started,
                                  prompt_for=prompt_for or student_prompt(gen_cfg)).train()
    summary: dict[str, Any] = {"samples": n, "filter": counts, "sft": {
        k: sft_summary.get(k) for k in ("steps", "conversations", "rows", "loss_first", "loss_last", "train_seconds")},
        "student": str(sft_dir / "model")}
    # 4. optional evaluation of the student before and after
    if ev:
        summary["eval"] = {tag: _evaluate(model, ev, out / "eval" / tag, seed, progress)
                           for tag, model in (("before", sft_cfg.model.name), ("after", str(sft_dir / "model")))}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _evaluate(model: str, ev: DistillEval, out: Path, seed: int, progress: bool) -> dict:
    task, examples, name, fields = from_run_settings(ev.from_run)
    cfg = EvalConfig(model=model, benchmark=name, samples=ev.samples, max_new_tokens=ev.max_new_tokens,
                     limit=ev.limit, seed=seed, **fields)
    res = run_eval(cfg, out, task=task, examples=examples, progress=progress, resume=True)
    m = res["metrics"]
    return {"pass@1": m["pass@1"], "format_rate": m["format_rate"], "problems": m["problems"]}
