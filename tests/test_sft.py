"""`r1 sft` on the offline tiny model: assistant-only loss, training, resume, LoRA."""

import json
import math

import pytest
import torch

from r1.config import build_sft_config
from r1.data.chat import IGNORE, collate, pack, tokenize_conversation
from r1.trainers.sft import SFTTrainer, sft_loss_sum


@pytest.fixture
def sft_data(tmp_path):
    rows = [{"problem": f"What is {a} + {b}?", "completion": f"<think>\n{a} + {b} = {a + b}\n</think>\n\\boxed{{{a + b}}}"}
            for a in range(8) for b in range(3)]
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cfg_for(path, *overrides):
    return build_sft_config({"model": {"name": "tiny"}, "data": {"path": str(path)},
                             "train": {"max_length": 256, "save_every": 2},
                             "optim": {"lr": 3e-3, "micro_batch_size": 2, "warmup_steps": 0},
                             "tracking": {"progress": False}}, list(overrides))


def test_loss_is_the_mean_over_assistant_tokens_only(tiny):
    model, tok = tiny
    convs = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
             [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
              {"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "6"}]]
    batch = collate(pack([tokenize_conversation(tok, c) for c in convs], 200), tok.pad_token_id)
    loss, n = sft_loss_sum(model, batch)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits.float()
    logp = logits[:, :-1].log_softmax(-1)
    tgt = batch["labels"][:, 1:]
    mask = tgt != IGNORE
    manual = -(logp.gather(-1, tgt.clamp(min=0)[..., None])[..., 0] * mask).sum()
    assert n == int(mask.sum()) > 0
    assert float(loss.detach()) == pytest.approx(float(manual), rel=1e-4)


def test_sft_trains_the_tiny_model_and_leaves_a_loadable_student(tmp_path, sft_data):
    from r1.models import load_model

    summary = SFTTrainer(cfg_for(sft_data, "train.epochs=4"), tmp_path / "run").train()
    assert summary["loss_last"] < 0.6 * summary["loss_first"]
    for f in ("config.yaml", "versions.json", "report.md", "summary.json", "plots/loss.png", "metrics.jsonl"):
        assert (tmp_path / "run" / f).is_file(), f
    student, tok = load_model(str(tmp_path / "run" / "model"), device="cpu")
    base, base_tok = load_model("tiny", device="cpu")
    assert any(not torch.equal(a, b) for a, b in zip(student.parameters(), base.parameters()))
    # its chat template prompts a bare question with the ids SFT put before the answer, and as
    # `r1 eval --model` samples it
    from transformers import AutoTokenizer

    from r1.config import AS_GIVEN, PromptConfig
    from r1.data.prompts import PromptFormat

    plain = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    row = json.loads(sft_data.read_text().splitlines()[0])
    bare = plain.apply_chat_template([{"role": "user", "content": row["problem"]}], add_generation_prompt=True,
                                     tokenize=False)
    bare_ids = plain(bare, add_special_tokens=False)["input_ids"]
    ids, labels = tokenize_conversation(base_tok, [{"role": "user", "content": row["problem"]},
                                                   {"role": "assistant", "content": row["completion"]}])
    assert bare_ids == ids[: len(bare_ids)] and labels[len(bare_ids) - 1] == IGNORE != labels[len(bare_ids)]
    assert bare_ids == PromptFormat.resolve(PromptConfig(**AS_GIVEN), plain).ids(row["problem"], plain)


def test_without_a_chat_template_sft_trains_and_saves_plain_turns_that_end_at_eos(tmp_path, sft_data, monkeypatch):
    """A tokenizer without a chat template: SFT renders "Role: content" turns, each assistant
    turn ended by EOS (so the model learns to stop), and model/ carries that template."""
    from transformers import AutoTokenizer

    import r1.trainers.policy as policy

    real = policy.load_model

    def templateless(*a, **k):
        model, tok = real(*a, **k)
        tok.chat_template = None
        return model, tok

    monkeypatch.setattr(policy, "load_model", templateless)
    SFTTrainer(cfg_for(sft_data, "train.steps=1"), tmp_path / "run").train()
    plain = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    turns = [{"role": "user", "content": "What is 1 + 2?"}, {"role": "assistant", "content": "3"}]
    assert plain.apply_chat_template(turns[:1], add_generation_prompt=True, tokenize=False) == \
        "User: What is 1 + 2?\nAssistant: "
    ids, labels = tokenize_conversation(plain, turns)
    assert [x for x in labels if x != IGNORE] == plain("3", add_special_tokens=False)["input_ids"] + [
        plain.eos_token_id] + plain("\n", add_special_tokens=False)["input_ids"]


def test_sft_resume_gives_the_same_weights(tmp_path, sft_data, monkeypatch):
    from r1.models import load_model

    SFTTrainer(cfg_for(sft_data, "train.steps=6"), tmp_path / "full").train()
    original = SFTTrainer.train_step

    def crash_at_5(self, step):
        if step == 4:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(SFTTrainer, "train_step", crash_at_5)
    with pytest.raises(KeyboardInterrupt):
        SFTTrainer(cfg_for(sft_data, "train.steps=6"), tmp_path / "cut").train()
    monkeypatch.setattr(SFTTrainer, "train_step", original)
    with pytest.raises(Exception, match="already holds a run"):
        SFTTrainer(cfg_for(sft_data, "train.steps=6"), tmp_path / "cut")
    SFTTrainer(cfg_for(sft_data, "train.steps=6"), tmp_path / "cut", resume=True).train()
    a, _ = load_model(str(tmp_path / "full" / "model"), device="cpu")
    b, _ = load_model(str(tmp_path / "cut" / "model"), device="cpu")
    for (n, x), (_, y) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(x, y), n
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("overrides", [["model.lora.enabled=true", "model.lora.r=4"],
                                       ["model.precision=fp32", "train.pack=false", "train.grad_accum=2"]],
                         ids=["lora", "fp32-unpacked-accum"])
def test_sft_variants(tmp_path, sft_data, overrides):
    summary = SFTTrainer(cfg_for(sft_data, "train.steps=4", *overrides), tmp_path / "run").train()
    assert (tmp_path / "run" / "model" / "config.json").is_file()
    assert math.isfinite(summary["loss_last"]) and summary["loss_last"] < summary["loss_first"]
