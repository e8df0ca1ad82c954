"""The lean decode step (`rollout/decode.py`): the same logits as the model's own forward for
each architecture it takes, the engine's same samples with it and without, and the models it
must leave to transformers."""

import pytest
import torch
from engine_support import same_samples_across_a_sync

from r1.padding import left_pad
from r1.rollout.decode import LeanDecoder
from r1.rollout.hf import HFEngine
from r1.rollout.kernels import pack_linears, packed_linear_available, use_decode_attention
from r1.rollout.kvcache import preallocated_cache, with_cache
from r1.types import SamplingParams


def _model(kind: str, vocab: int, **extra):
    import transformers

    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  tie_word_embeddings=True, attn_implementation="sdpa")
    cls = {"llama": "LlamaConfig", "mistral": "MistralConfig", "qwen2": "Qwen2Config", "qwen3": "Qwen3Config",
           "gemma": "GemmaConfig"}[kind]
    if kind == "qwen3":
        common["head_dim"] = 16
    cfg = getattr(transformers, cls)(**{**common, **extra})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():  # random biases and norm weights, so that a dropped term shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.normal_(0.0 if name.endswith("bias") else 1.0, 0.1)
    return model.eval()


KINDS = ["llama", "mistral", "qwen2", "qwen3"]


def _prompts():
    return [[5, 9, 33, 41, 7, 2], [12, 3], [100, 101, 102]]


# Llama 3.x's shapes of the family: biases on every projection, its scaled RoPE, a head
# size of its own (not hidden / heads), an untied head
LLAMA3 = {"attention_bias": True, "mlp_bias": True, "head_dim": 24, "tie_word_embeddings": False,
          "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 64}}


@pytest.mark.parametrize("kind", [*KINDS, "llama3"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lean_step_gives_the_models_logits(kind, dtype):
    """Decode steps over left-padded rows (and without padding) through the lean step and through
    the model's forward, each on its own cache: the same logits bit for bit, step after step."""
    model = (_model("llama", 300, **LLAMA3) if kind == "llama3" else _model(kind, 300)).to(dtype)
    use_decode_attention(model)  # the engine's single-token attention, as its forward runs it
    packed = dtype == torch.bfloat16 and packed_linear_available(model)
    if packed:
        pack_linears(model)  # the engine's prefill and the forward's layout
    lean = LeanDecoder.for_model(model, packed=packed)
    assert lean is not None
    for prompts in (_prompts(), [[5, 9, 33], [7, 8, 9]]):
        ids, mask = left_pad(prompts, 0)
        padded = bool((mask == 0).any())
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            caches = []
            for _ in range(2):
                cache = preallocated_cache(model, ids.shape[1] + 6)
                model(input_ids=ids, attention_mask=mask, position_ids=pos, **with_cache(model, cache), use_cache=True)
                caches.append(cache)
            tokens, last = torch.tensor([42, 7, 250][: len(prompts)]), pos[:, -1]
            for _ in range(5):
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
                last = last + 1
                want = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=last[:, None],
                             **with_cache(model, caches[0]), use_cache=True).logits[:, -1]
                got = lean.step(tokens, last, mask if padded else None, caches[1])
                assert got.dtype == want.dtype and torch.equal(got, want), (kind, dtype, (got - want).abs().max())
                tokens = want.float().argmax(-1)


@pytest.mark.parametrize("kind", KINDS)
def test_engine_samples_the_same_with_and_without_the_lean_step(kind):
    """The engine's tokens and log-probs are the same whether its decode steps go through the
    lean step or the model's forward (bf16 packed, as on a CPU with bf16), and stay the same
    after a weight sync (the packs follow the weights) and a release."""
    model = _model(kind, 300)
    from transformers import AutoTokenizer  # noqa: F401 - the engine needs only ids here

    tok = _ByteTokenizer()
    lean = HFEngine(model, tok, bf16=True)
    plain = HFEngine(model, tok, bf16=True, lean_decode=False)
    assert lean._lean is not None and plain._lean is None
    p = SamplingParams(max_new_tokens=10, temperature=0.9, seed=3, stop=(), ignore_eos=True)
    _, c = same_samples_across_a_sync(lean, plain, model, _prompts(), 2, p, 1.3)
    lean.release()
    assert all(lin.weight is None for lin in lean._lean.linears())
    assert lean.generate(_prompts(), 2, p).completion_ids == c.completion_ids


class _ByteTokenizer:
    """What the engine asks of a tokenizer when no stop strings are set."""

    pad_token_id = 0
    eos_token_id = 1

    def __len__(self):
        return 300

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(map(str, ids))


def test_models_the_lean_step_leaves_to_transformers():
    assert LeanDecoder.for_model(_model("gemma", 300)) is None  # scaled embeddings, (1 + w) norms
    from peft import LoraConfig, get_peft_model

    adapted = get_peft_model(_model("llama", 300), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert LeanDecoder.for_model(adapted) is None
    assert LeanDecoder.for_model(adapted.get_base_model()) is None  # LoRA layers in place of Linear
    for other in ("eager", "flex_attention"):  # attention the step does not run: other numbers
        assert LeanDecoder.for_model(_model("llama", 300, attn_implementation=other)) is None


def test_a_sliding_window_shorter_than_the_rollout_goes_through_the_forward():
    """Mistral's window: full attention (the lean step) while the rollout fits in it, the model's
    own forward (which masks by the window) once it does not; the same samples either way."""
    model = _model("mistral", 300, sliding_window=8)
    lean = LeanDecoder.for_model(model)
    assert lean is not None and lean.fits(8) and not lean.fits(9)
    tok = _ByteTokenizer()
    p = SamplingParams(max_new_tokens=12, temperature=1.0, seed=1, stop=(), ignore_eos=True)
    a = HFEngine(model, tok, bf16=True).generate(_prompts(), 2, p)
    b = HFEngine(model, tok, bf16=True, lean_decode=False).generate(_prompts(), 2, p)
    assert a.completion_ids == b.completion_ids
    short = SamplingParams(max_new_tokens=2, temperature=1.0, seed=1, stop=(), ignore_eos=True)  # 6 + 2 = 8
    engine = HFEngine(model, tok, bf16=True)
    calls = []
    step = engine._lean.step
    engine._lean.step = lambda *a: calls.append(1) or step(*a)
    assert engine.generate(_prompts(), 2, short).completion_ids == HFEngine(
        model, tok, bf16=True, lean_decode=False).generate(_prompts(), 2, short).completion_ids
    assert calls  # the whole rollout within the window: the lean step ran
    qwen = _model("qwen2", 300, use_sliding_window=True, sliding_window=6, max_window_layers=1)
    assert LeanDecoder.for_model(qwen).window == 6


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_the_engine_samples_what_the_plain_weights_give_at_real_widths():
    """At SmolLM2's widths (576) a prefill of 4 × 112 tokens through oneDNN's packed weights
    rounds differently from the plain bf16 matmul the trainer runs; the engine takes the packs
    only at decode's few rows (`kernels.PACKED_MAX_ROWS`), where they agree with the plain matmul,
    so its samples are the plain path's, token for token, with the lean step or without."""
    model = _model("llama", 300, hidden_size=576, intermediate_size=1536, num_attention_heads=9,
                   num_key_value_heads=3)
    if not packed_linear_available(model.to(torch.bfloat16)):
        pytest.skip("no prepacked bf16 linear on this CPU")
    tok = _ByteTokenizer()
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(2, 300, (112,), generator=g).tolist() for _ in range(4)]
    p = SamplingParams(max_new_tokens=8, temperature=1.0, seed=0, stop=(), ignore_eos=True)
    plain = HFEngine(model, tok, bf16=True, pack_weights=False, lean_decode=False).generate(prompts, 2, p)
    lean = HFEngine(model, tok, bf16=True).generate(prompts, 2, p)
    assert lean.completion_ids == plain.completion_ids and lean.logprobs == plain.logprobs
    packed = HFEngine(model, tok, bf16=True, lean_decode=False).generate(prompts, 2, p)
    assert packed.completion_ids == plain.completion_ids and packed.logprobs == plain.logprobs
