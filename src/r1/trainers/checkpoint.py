"""Atomic checkpoints: a run killed at any instant leaves only complete checkpoints.

Layout: ``checkpoints/step-000010/`` holding ``model.pt`` (trainable weights),
``optimizer.pt``, ``scheduler.pt``, ``rng.pt`` and ``state.json``. Each is written into
a hidden temporary folder first, fsynced, and renamed into place in one `os.replace`;
``checkpoints/latest`` (a text file, itself replaced atomically) names the newest.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r1.errors import R1Error

LATEST = "latest"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Only the parameters that train (the LoRA adapters, or everything)."""
    return {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(root: Path, step: int, model, optimizer, scheduler, state: dict, keep: int = 2,
                    model_state: dict | None = None, optim_state: dict | None = None) -> Path:
    """`model_state`/`optim_state`, when given, are saved instead of the model's trainable
    weights and the optimizer's state (a sharded policy gathers them itself)."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, obj in (
            ("model.pt", trainable_state(model) if model_state is None else model_state),
            ("optimizer.pt", optimizer.state_dict() if optim_state is None else optim_state),
            ("scheduler.pt", scheduler.state_dict()),
            ("rng.pt", rng_state()),
        ):
            with open(tmp / name, "wb") as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
        _write_atomic(tmp / "state.json", json.dumps({"step": step, **state}, indent=1))
        _fsync_dir(tmp)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as "unexpected pos …"
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(root)
        raise R1Error(f"could not write the checkpoint of step {step} to {root} ({e}; is the disk full?); "
                      + (f"{previous.name} is intact: resume from it with --resume" if previous
                         else "no earlier checkpoint exists")) from e
    if final.exists():
        _discard(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    _write_atomic(root / LATEST, final.name)
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
        _discard(old)
    for leftover in root.glob(".old-step-*"):  # from a run killed while pruning
        shutil.rmtree(leftover, ignore_errors=True)
    return final


def _discard(path: Path) -> None:
    """Hide a checkpoint with one atomic rename, then delete it: a kill during the delete
    leaves a dot-folder that nothing reads, never a half-deleted `step-N`."""
    hidden = path.with_name(f".old-{path.name}")
    shutil.rmtree(hidden, ignore_errors=True)
    os.replace(path, hidden)
    _fsync_dir(path.parent)
    shutil.rmtree(hidden, ignore_errors=True)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint, or None. Leftover temporary folders are ignored."""
    pointer = root / LATEST
    if pointer.is_file():
        path = root / pointer.read_text().strip()
        if (path / "state.json").is_file():
            return path
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").is_file())
    return done[-1] if done else None


def load_trainable(model, optimizer, weights: dict, optim_state: dict) -> None:
    """Copy saved trainable weights into `model` and restore `optimizer` (a plain policy)."""
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise ValueError(f"does not match the model (e.g. {missing[0]})")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device))
    optimizer.load_state_dict(optim_state)


def load_checkpoint(path: Path, model, optimizer, scheduler, load_states=None) -> dict:
    """Restore a checkpoint; `load_states(weights, optimizer_state)` (a policy's own, e.g. a
    sharded one's) replaces `load_trainable` into `model` and `optimizer`."""
    weights = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    optim_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
    try:
        if load_states is None:
            load_trainable(model, optimizer, weights, optim_state)
        else:
            load_states(weights, optim_state)
    except ValueError as e:
        raise ValueError(f"checkpoint {path}: {e}") from None
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    return json.loads((path / "state.json").read_text())


def prepare_run_dir(out: Path, resume: bool) -> bool:
    """Create `out`; refuse to overwrite a run without --resume. Returns whether to resume
    (False, with a warning, when --resume finds no checkpoint)."""
    import logging

    ckpts = out / "checkpoints"
    has_run = ckpts.exists() and latest_checkpoint(ckpts) is not None
    if has_run and not resume:
        raise R1Error(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if resume and not has_run:
        logging.getLogger(__name__).warning("--resume: no checkpoint in %s, starting from scratch", ckpts)
        resume = False
    out.mkdir(parents=True, exist_ok=True)
    return resume
