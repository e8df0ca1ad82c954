"""`r1`: train reasoning models the DeepSeek-R1 way. Run `r1 COMMAND --help`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from r1.cli import options
from r1.config import FilterConfig, ServeConfig
from r1.errors import R1Error

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train reasoning models the DeepSeek-R1 way (GRPO, rewards, pipeline).")

def _run_grpo(cfg, out: str, resume: bool) -> None:
    from r1.trainers.grpo import GRPOTrainer

    summary = GRPOTrainer(cfg, out, resume=resume).train()
    if not summary:  # a data-parallel rank other than 0: rank 0 reports
        return
    b, a = summary["heldout_before"], summary["heldout_after"]
    typer.echo(f"held-out pass@1 {b.get('pass@1', 0):.3f} -> {a.get('pass@1', 0):.3f}, "
               f"format rate {b.get('format_rate', 0):.3f} -> {a.get('format_rate', 0):.3f}")
    typer.echo(f"run written to {out} (report.md, summary.json, plots/, model/)")


@app.command()
def zero(
    preset: str = typer.Option("smollm2", help="built-in preset: smollm2 (the embedded default), reasoning (a multi-step task), tools (the model learns to call a calculator) or tiny"),
    task: Optional[str] = typer.Option(None, help="task name (countdown, arithmetic, gsm8k, math)"),
    steps: Optional[int] = typer.Option(None, help="number of GRPO steps"),
    out: Optional[str] = options.out_option("runs/zero-PRESET"),
    resume: bool = options.Resume,
    set_: Optional[list[str]] = options.SetOpt,
) -> None:
    """R1-Zero: pure RL with GRPO from the embedded model, no SFT."""
    from r1.config import build_config, read_yaml
    from r1.presets import preset_names, preset_path

    if preset not in preset_names():
        raise R1Error(f"unknown preset {preset!r}: use one of {', '.join(preset_names())}")
    data = read_yaml(preset_path(preset))
    extra = list(set_ or [])
    if task:
        if task != data.get("task", {}).get("name"):
            data["task"] = {"name": task}  # the preset's task options belong to its task
    if steps is not None:
        extra.append(f"train.steps={steps}")
    cfg = build_config(data, extra)
    _run_grpo(cfg, out or options.default_out("zero", preset), resume)


@app.command()
@options.recipe_command("grpo", "YAML recipe (see recipes/)")
def grpo(recipe: str, out: str, resume: bool, sets: list[str]) -> None:
    """GRPO training from a YAML recipe."""
    from r1.config import load_config

    _run_grpo(load_config(recipe, sets), out, resume)


@app.command()
@options.recipe_command("sft", "YAML recipe (see recipes/distill-*.yaml, section sft)")
def sft(recipe: str, out: str, resume: bool, sets: list[str]) -> None:
    """Chat SFT with the loss on assistant tokens only (cold start, stage 3, distillation)."""
    from r1.config import build_sft_config, read_yaml
    from r1.trainers.sft import SFTTrainer

    data = read_yaml(recipe)
    cfg = build_sft_config(data.get("sft", data), sets, source=recipe)
    summary = SFTTrainer(cfg, out, resume=resume).train()
    if not summary:  # a data-parallel rank other than 0
        return
    typer.echo(f"loss {summary['loss_first']:.3f} -> {summary['loss_last']:.3f} over {summary['steps']} steps; "
               f"model written to {out}/model")


@app.command()
@options.recipe_command("distill", "YAML recipe (see recipes/distill-*.yaml)")
def distill(recipe: str, out: str, resume: bool, sets: list[str]) -> None:
    """Distillation: teacher samples -> rejection sampling -> SFT of the student (resumable)."""
    from r1.config import read_yaml
    from r1.pipeline.distill import run_distill

    s = run_distill(read_yaml(recipe), out, sets, source=recipe, resume=resume)
    typer.echo(f"teacher samples {s['samples']}, kept {s['filter']['kept']}; SFT loss "
               f"{s['sft']['loss_first']:.3f} -> {s['sft']['loss_last']:.3f}; student at {s['student']}")
    if "eval" in s:
        b, a = s["eval"]["before"], s["eval"]["after"]
        typer.echo(f"student held-out pass@1 {b['pass@1']:.3f} -> {a['pass@1']:.3f}, "
                   f"format {b['format_rate']:.3f} -> {a['format_rate']:.3f}")


@app.command()
@options.recipe_command("pipeline", "YAML recipe (see recipes/r1-pipeline-*.yaml)")
def pipeline(recipe: str, out: str, resume: bool, sets: list[str]) -> None:
    """The R1 pipeline: cold start, reasoning RL, rejection sampling + SFT, RL; resumable."""
    from r1.config import read_yaml
    from r1.pipeline.runner import Pipeline

    res = Pipeline(read_yaml(recipe), out, sets, source=recipe, resume=resume).run()
    for name, m in [("base", res["base"])] + [(s["name"], s["metrics"]) for s in res["stages"]]:
        typer.echo(f"{name:>16}: pass@1 {m['pass@1']:.3f}  format {m['format_rate']:.3f}  "
                   f"language {m['language_consistency']:.3f}  length {m['response_length_mean']:.1f}")
    typer.echo(f"report: {out}/report.md, {out}/report.html; manifest: {out}/manifest.json")


@app.command()
@options.sampling_command("runs/generate-TASK-MODEL")
def generate(
    data: Optional[str] = typer.Option(None, help="problems: a JSONL file (fields as the task reads them); not "
                                       "needed for generated tasks or --from-run"),
    task: str = typer.Option("math", help="how to read the problems and their gold answers (math, gsm8k, "
                             "humaneval, arithmetic, countdown)"),
    from_run: Optional[str] = typer.Option(None, help="a training run as teacher: its model, task (training "
                                           "split), prompt and stop strings"),
    *, out: Optional[str], resume: bool, api_key: Optional[str], progress: bool, sampling: dict,  # from the decorator
) -> None:
    """Sample reasoning traces (teacher data for `r1 filter` and `r1 sft`) into a folder."""
    from r1.pipeline.generate import GenerateConfig, run_generate

    cfg = options.build(GenerateConfig, **sampling, data=data, task=task, from_run=from_run)
    out = out or options.default_out("generate", Path(from_run).name if from_run else task, cfg.api_model or cfg.model)
    res = run_generate(cfg, out, api_key=api_key, resume=resume, progress=progress)
    typer.echo(f"{res['samples']} samples of {res['problems']} problems in {out}/samples.jsonl")


@app.command(name="filter")
@options.config_flags(FilterConfig, into="settings",
                      common={"out": (Optional[str], options.out_option("runs/filter-IN"))})
def filter_(
    inp: str = typer.Argument(..., metavar="IN", help="samples: an `r1 generate` folder or a JSONL file"),
    *, out: Optional[str], settings: dict,  # from the decorator
) -> None:
    """Rejection sampling (R1 stage 3): keep verified, well-formed, readable samples (OUT/kept.jsonl)."""
    from r1.pipeline.filter import filter_to

    cfg = options.build(FilterConfig, **settings)
    out_p = Path(out or options.default_out("filter", Path(inp).name))
    res, n = filter_to(inp, out_p, cfg)
    counts = res.counts()
    dropped = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "kept" and v)
    typer.echo(f"kept {counts['kept']} of {n} samples" + (f"; dropped: {dropped}" if dropped else "")
               + f" -> {out_p}/kept.jsonl, {out_p}/dropped.jsonl")


@app.command()
@options.config_flags(ServeConfig, into="settings")
def serve(*, settings: dict) -> None:
    """An OpenAI-compatible API (reasoning_content, streaming) and a chat page at /."""
    from r1.serve.launch import serve as run_server

    run_server(options.build(ServeConfig, **settings), say=typer.echo)


@app.command()
def export(
    run: str = typer.Argument(..., help="a training run folder (or a model folder)"),
    to: Optional[str] = typer.Option(None, help="write a clean model folder here: weights, tokenizer with its "
                                     "chat template, generation config, model card (and the GGUF file, with --gguf)"),
    gguf: bool = typer.Option(False, "--gguf", help="write a GGUF file for llama.cpp and Ollama, with the model's "
                              "chat template (into --to, else beside the run's model/)"),
    quant: str = typer.Option("q8_0", help="with --gguf: the weight type, f16, bf16, q8_0 or f32"),
    push: Optional[str] = typer.Option(None, help="upload the model to this Hugging Face Hub repository (ORG/NAME)"),
    private: bool = typer.Option(False, "--private", help="with --push: a new repository is private"),
    token: Optional[str] = typer.Option(None, help="Hub token (default: huggingface_hub's login, or $HF_TOKEN)"),
) -> None:
    """Export a trained model: a clean folder (--to), a GGUF file (--gguf) and the Hugging Face Hub (--push)."""
    from r1.pipeline.export import check_gguf_type, export_gguf, export_to, model_folder
    from r1.pipeline.export import push as push_folder

    if not to and not push and not gguf:
        raise R1Error("give --to DIR, --gguf, --push ORG/NAME, or several")
    if gguf:
        check_gguf_type(quant)  # before anything is written
    source = model_folder(run)
    folder = export_to(run, to) if to else source
    if to:
        typer.echo(f"model written to {folder}")
    if gguf:
        name = (source.parent.name if source.name == "model" else source.name) or "model"
        target = (folder if to else source.parent) / f"{name}-{quant}.gguf"
        typer.echo(f"GGUF ({quant}) written to {export_gguf(source, target, quant)}")
    if push:
        typer.echo(f"pushed to {push}: {push_folder(folder, push, private=private, token=token)}")


from r1.cli.eval import app as eval_app  # noqa: E402  (typer only: cheap)

app.add_typer(eval_app, name="eval")


def main() -> None:
    try:
        app()
    except R1Error as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: the last checkpoint is intact; rerun with --resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
