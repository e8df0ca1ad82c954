"""vLLM rollouts: importable without vLLM, clear errors; on a GPU with vLLM, the same
protocol as the transformers engine (shapes, grouping, log-probs, weight sync)."""

from __future__ import annotations

import importlib.util

import pytest

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_import_without_vllm_and_install_hint():
    import r1.rollout.vllm as v  # never needs vLLM

    if HAS_VLLM:
        pytest.skip("vLLM is installed here")
    from r1.errors import R1Error

    with pytest.raises(R1Error, match="pip install"):
        v.VLLMEngine("x", None)


def test_vllm_server_engine_needs_a_live_server(tmp_path):
    from r1.errors import R1Error
    from r1.rollout.vllm import VLLMServerEngine

    with pytest.raises(R1Error, match="does not answer /health"):
        VLLMServerEngine("http://127.0.0.1:9", "m", None, weights_dir=tmp_path, timeout_s=2)


def test_config_rejects_unknown_engine_and_checks_server_fields():
    from r1.config import build_config
    from r1.errors import R1Error

    with pytest.raises(R1Error, match="engine"):
        build_config({"rollout": {"engine": "tgi"}})
    cfg = build_config({"rollout": {"engine": "vllm-server", "vllm_server_url": "http://h:8000",
                                    "vllm_weights_dir": "/shared/w"}})
    assert cfg.rollout.engine == "vllm-server"


@pytest.mark.gpu
def test_colocated_vllm_follows_the_protocol_and_syncs_weights(tmp_path):
    pytest.importorskip("vllm")
    import torch

    from r1.models import load_model, resolve_path
    from r1.rollout.base import RolloutEngine
    from r1.rollout.vllm import VLLMEngine
    from r1.types import SamplingParams

    model, tok = load_model("smollm2-135m", device="cuda")
    engine = VLLMEngine(resolve_path("smollm2-135m"), tok, gpu_memory_utilization=0.3)
    assert isinstance(engine, RolloutEngine)
    prompts = [tok("What is 2 + 3?", add_special_tokens=False)["input_ids"], tok("Hi", add_special_tokens=False)["input_ids"]]
    params = SamplingParams(max_new_tokens=16, temperature=1.0, seed=0)
    gen = engine.generate(prompts, 4, params)
    assert len(gen.completion_ids) == 8 and all(len(i) == len(lp) for i, lp in zip(gen.completion_ids, gen.logprobs))
    assert all(lp <= 0 for row in gen.logprobs for lp in row)
    # zeroing the LM head in the trainer's model must change what vLLM samples after a sync
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.0)
    engine.sync_weights(model)
    greedy = engine.generate(prompts, 1, SamplingParams(max_new_tokens=4, temperature=0.0))
    assert all(len(set(row)) == 1 for row in greedy.completion_ids)  # a zero model repeats one token


def test_sampling_weights_dedupes_tied_tensors_takes_state_dicts_and_casts(tiny):
    """What a vLLM engine is sent after an update: the tied LM head once (as the embedding),
    an FSDP-gathered state dict as it is, floating tensors in the engine's dtype."""
    import torch

    from r1.rollout.vllm import sampling_weights

    model, _ = tiny
    assert model.lm_head.weight is model.get_input_embeddings().weight
    out = sampling_weights(model)
    assert "lm_head.weight" not in out and "model.embed_tokens.weight" in out
    assert len(out) == len(model.state_dict()) - 1
    gathered = {k: v.clone() for k, v in model.state_dict().items()}  # FSDP: separate full tensors
    out = sampling_weights(gathered, torch.bfloat16)
    assert set(out) == set(gathered) and all(v.dtype == torch.bfloat16 for v in out.values())
    assert torch.equal(out["model.norm.weight"], gathered["model.norm.weight"].to(torch.bfloat16))
