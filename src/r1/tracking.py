"""Metrics as they happen: JSONL (always), TensorBoard and Weights & Biases (optional), a
rich progress bar."""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path
from typing import Any

from r1.runs import read_log


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def open_step_log(path: Path, resume_step: int | None):
    """Open a JSONL file of per-step rows for appending. On resume, rows past the
    checkpoint are dropped (those steps will be redone); on a fresh run it starts empty."""
    if resume_step is not None:
        kept = [r for r in read_log(path) if r.get("step", 0) <= resume_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    elif path.exists():
        path.unlink()
    return path.open("a")


class Tracker:
    """Appends one JSON row per step to `metrics.jsonl` and mirrors it to TensorBoard and
    W&B (`tracking`: a run config's `tracking` section; `config`: the whole config, which
    W&B stores with the run); every sampled completion goes to `rollouts.jsonl`."""

    def __init__(self, out_dir: Path, tracking: Any = None, *, config: dict | None = None,
                 resume_step: int | None = None):
        self.path = out_dir / "metrics.jsonl"
        self._file = open_step_log(self.path, resume_step)
        self._rollouts_path, self._resume_step = out_dir / "rollouts.jsonl", resume_step
        self._rollouts = None  # opened on the first rollouts logged (SFT has none)
        self._tb = None
        self._wandb = _start_wandb(out_dir, tracking, config or {}) if getattr(tracking, "wandb", False) else None
        if getattr(tracking, "tensorboard", False):
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:
                import logging

                logging.getLogger(__name__).warning("tensorboard is not installed; skipping it")

    def log(self, row: dict[str, Any]) -> None:
        row = {k: _clean(v) for k, v in row.items()}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "step" and v is not None}
        step = row.get("step", 0)
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key.replace(".", "/"), value, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def log_rollouts(self, rows: list[dict[str, Any]]) -> None:
        if self._rollouts is None:
            self._rollouts = open_step_log(self._rollouts_path, self._resume_step)
        self._rollouts.write("".join(json.dumps(r) + "\n" for r in rows))
        self._rollouts.flush()

    def close(self) -> None:
        self._file.close()
        if self._rollouts is not None:
            self._rollouts.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _start_wandb(out_dir: Path, tracking: Any, config: dict):
    """A W&B run for this output folder: the same run again when a run resumes (its id is
    kept in DIR/wandb_run_id), so the curves continue instead of starting a second run."""
    try:
        import wandb
    except ImportError:
        from r1.errors import R1Error

        raise R1Error("tracking.wandb: the wandb package is not installed (pip install wandb)") from None
    id_file = out_dir / "wandb_run_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
    id_file.write_text(run_id + "\n")
    return wandb.init(project=tracking.wandb_project, entity=tracking.wandb_entity, name=out_dir.name,
                      id=run_id, resume="allow", dir=str(out_dir), config=config, mode=tracking.wandb_mode,
                      settings=wandb.Settings(silent=True))


class Progress:
    """A rich progress bar with live reward and accuracy; a no-op when disabled."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, description: str = "GRPO"):
        self._bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
            from rich.progress import TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._task = self._bar.add_task(description, total=total, completed=start, info="")
            self._bar.start()

    def update(self, advance: int = 1, info: str = "") -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=advance, info=info)

    def print(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def collect_versions() -> dict[str, str]:
    import platform
    import sys
    from importlib import metadata

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("r1", "torch", "transformers", "peft", "math-verify", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
