"""What every trainer shares: its run folder, the process group, and the start of a run
(settings and versions written, the last checkpoint loaded with `--resume`, progress and
metrics opened where the last run left them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from r1.config import dump_config
from r1.tracking import Progress, Tracker, collect_versions
from r1.trainers import checkpoint as ckpt
from r1.trainers.distributed import Dist


class Trainer:
    """Subclasses build `self.policy` before `start_run` and say in `after_resume` what must
    follow a loaded checkpoint (refreshed compute weights, a synced sampler)."""

    def __init__(self, cfg: Any, out_dir: str | Path, *, resume: bool = False):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.dist = Dist()
        self.resume = self.dist.prepare_run_dir(self.out, resume)  # refuses a used folder without --resume

    def after_resume(self) -> None:
        self.policy.refresh_compute_weights()

    def start_run(self, total_steps: int, description: str = "GRPO") -> tuple[int, dict, Progress, Tracker | None]:
        """(first step, the checkpoint's state, the progress bar, rank 0's metrics tracker)."""
        cfg, main = self.cfg, self.dist.is_main
        if main:
            dump_config(cfg, self.out / "config.yaml")
            (self.out / "versions.json").write_text(json.dumps(
                {**collect_versions(), "processes": self.dist.world}, indent=1))
        start, state = 0, {}
        latest = ckpt.latest_checkpoint(self.ckpt_dir) if self.resume else None
        if latest is not None:
            p = self.policy
            state = ckpt.load_checkpoint(latest, p.model, p.optimizer, p.scheduler, load_states=p.load_checkpoint_states)
            start = state["step"]
            self.after_resume()
        progress = Progress(total_steps, start, enabled=cfg.tracking.progress and main, description=description)
        if latest is not None:
            progress.print(f"resumed from {latest} (step {start})")
        tracker = Tracker(self.out, cfg.tracking, config=cfg.model_dump(mode="json"),
                          resume_step=start if latest is not None else None) if main else None
        return start, state, progress, tracker
