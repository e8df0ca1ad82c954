"""`r1 export RUN`: a run's model as a clean, self-contained folder (`--to DIR`: weights,
tokenizer with its chat template, generation config, model card), and on the Hugging Face Hub
(`--push ORG/NAME`, through `huggingface_hub`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from r1.errors import R1Error

# what a model folder holds that another tool needs (checkpoints, optimizer states and r1's
# own bookkeeping stay in the run)
KEEP_SUFFIXES = (".json", ".safetensors", ".jinja", ".model", ".txt", ".md", ".py")


def model_folder(run: str | Path) -> Path:
    """The model of a run folder (or a model folder itself)."""
    run = Path(run).expanduser()
    for folder in (run / "model", run):
        if (folder / "config.json").is_file():
            return folder.resolve()
    raise R1Error(f"{run} holds no model (no model/config.json): give a finished training run or a model folder")


def export_to(run: str | Path, to: str | Path) -> Path:
    """Copy the run's model files into `to` (which must not exist, or be empty), written beside
    and renamed into place so that an interrupted export leaves nothing half-written."""
    src, dest = model_folder(run), Path(to).expanduser()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise R1Error(f"{dest} already exists and is not empty: choose another --to")
    tmp = dest.parent / f".{dest.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.suffix in KEEP_SUFFIXES:
            shutil.copy2(f.resolve(), tmp / f.name)
    if dest.exists():
        dest.rmdir()
    tmp.rename(dest)
    return dest


def push(folder: str | Path, repo: str, *, private: bool = False, token: str | None = None,
         api: Any = None) -> str:
    """Upload a model folder to the Hub repository `repo` (created if needed); the URL of the
    commit. `api`: an `HfApi`-like object (tests pass a stand-in)."""
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise R1Error(f"--push {repo!r}: give the repository as ORG/NAME")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    try:
        api.create_repo(repo_id=repo, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                                 commit_message="Upload a model trained with r1")
    except R1Error:
        raise
    except Exception as e:  # network, authentication, permissions: one line, nothing lost locally
        raise R1Error(f"pushing to {repo} failed: {type(e).__name__}: {e}") from None
    return str(getattr(info, "commit_url", info))
