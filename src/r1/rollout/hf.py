"""A transformers rollout engine with its own decode loop (CPU or GPU).

Why not `model.generate()`: we need the sampling log-probabilities of every token
(for the importance ratio when μ > 1), stop strings such as ``</answer>`` checked
cheaply, one prefill per prompt shared by its G samples, and finished rows dropped from
the batch so that a long straggler does not make every row pay. The loop is ~100 lines.

When the hardware has native bf16 (AVX-512 BF16/AMX CPUs, Ampere+ GPUs) the engine
samples from a bf16 copy of the policy, refreshed by `sync_weights` after each update;
the trainer keeps fp32 master weights.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from r1.padding import left_pad
from r1.rollout.kvcache import preallocated_cache, with_cache
from r1.types import Generation, SamplingParams


def sample_tokens(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None,
    uniforms: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row. logits [b, V] -> (tokens [b], logprobs [b]).

    The log-probability is taken under softmax(logits / T) over the full vocabulary (the
    distribution the trainer recomputes), not the top-p truncated one. T = 0 is greedy.

    Exact, but cheap on a CPU: `torch.multinomial` draws an exponential per vocabulary
    entry (~30 ms a step for 32 rows × 49k tokens here) and a full sort for top-p costs
    ~60 ms; inverse-CDF sampling costs ~1 ms (`_inverse_cdf`), and the nucleus is found in a
    top-k prefix that is grown until it holds top_p of the mass. Without top-p the weights
    exp(x - max) serve both the draw and the log-sum-exp (one pass over the vocabulary fewer).

    `uniforms` [b] (in [0, 1)) replaces the draws from `generator`: the engine draws them per
    original row so that a row's tokens do not depend on which other rows share the batch."""
    if temperature > 0 and temperature != 1.0:
        scaled = logits.float() / temperature
    else:
        scaled = logits.float()
    if temperature <= 0 or top_p < 1.0:
        lse = torch.logsumexp(scaled, dim=-1, keepdim=True)
        if temperature <= 0:
            tokens = scaled.argmax(-1)
        else:
            tokens = _sample_nucleus(scaled, lse, top_p, generator, uniforms)
    else:
        peak = scaled.amax(-1, keepdim=True)
        weights = (scaled - peak).exp_()
        lse = peak + weights.sum(-1, keepdim=True).log_()
        tokens = _inverse_cdf(weights, generator, uniforms)
    return tokens, scaled.gather(-1, tokens[:, None])[:, 0] - lse[:, 0]


_BLOCK = 256  # columns per block of the two-level inverse CDF


def _inverse_cdf(probs: torch.Tensor, generator: torch.Generator | None,
                 uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """One draw per row from unnormalised non-negative weights [b, n] -> indices [b].

    u · total is located first among the sums of blocks of 256 columns, then inside its
    block: two short cumulative sums instead of one over the whole vocabulary (a cumsum is a
    sequential scan: 1.7 ms a step for 32 × 49k, against ~0.3 ms this way). A zero-weight
    entry is never drawn (rounding between the two levels falls back to the block's last
    non-zero weight)."""
    b, n = probs.shape
    if uniforms is None:
        uniforms = torch.rand((b,), generator=generator, device=probs.device)
    if n <= 4 * _BLOCK:
        cdf = probs.cumsum(-1)
        u = uniforms[:, None].to(cdf.dtype) * cdf[:, -1:]
        # right=True: the first index whose cdf exceeds u, so a zero-weight entry is never drawn
        return torch.searchsorted(cdf, u, right=True)[:, 0].clamp_(max=n - 1)
    full = n // _BLOCK * _BLOCK
    sums = probs[:, :full].view(b, -1, _BLOCK).sum(-1)
    if full < n:
        sums = torch.cat([sums, probs[:, full:].sum(-1, keepdim=True)], dim=-1)
    block_cdf = sums.cumsum(-1)
    u = uniforms[:, None].to(block_cdf.dtype) * block_cdf[:, -1:]
    block = torch.searchsorted(block_cdf, u, right=True).clamp_(max=sums.shape[1] - 1)
    rest = u - torch.where(block > 0, block_cdf.gather(-1, (block - 1).clamp(min=0)), 0.0)
    columns = block * _BLOCK + torch.arange(_BLOCK, device=probs.device)
    inside = columns < n
    weights = probs.gather(-1, columns.clamp(max=n - 1)).masked_fill_(~inside, 0.0)
    within = torch.searchsorted(weights.cumsum(-1), rest, right=True)
    nonzero = weights > 0
    last = _BLOCK - 1 - nonzero.flip(-1).to(torch.int8).argmax(-1, keepdim=True)
    return (block * _BLOCK + torch.minimum(within, last))[:, 0]


def _sample_nucleus(
    scaled: torch.Tensor, lse: torch.Tensor, top_p: float, generator: torch.Generator | None,
    uniforms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Top-p: keep the smallest prefix (by probability) whose mass reaches top_p (the first
    token always stays), renormalise, draw. The same set as a full sort, found in top-k."""
    vocab = scaled.shape[-1]
    k = min(64, vocab)
    while True:
        values, order = scaled.topk(k, dim=-1) if k < vocab else scaled.sort(-1, descending=True)
        probs = (values - lse).exp_()
        before = probs.cumsum(-1) - probs  # mass strictly ahead of each token
        if k == vocab or bool((before[:, -1] + probs[:, -1] >= top_p).all()):
            break
        k = min(k * 8, vocab)
    probs = probs.masked_fill_(before >= top_p, 0.0)
    return order.gather(-1, _inverse_cdf(probs, generator, uniforms)[:, None])[:, 0]


def _decode_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, **kwargs: Any):
    """SDPA, except that one query token against grouped KV heads is packed as
    [b, kv_heads, group, d] (no `enable_gqa`, no repeated KV). transformers takes the
    `enable_gqa` path whenever there is no padding mask, and on a CPU that kernel is ~5×
    slower for a decode step (2.4 ms against 0.49 ms at 32 rows, SmolLM2's 9/3 heads)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if query.shape[2] != 1 or groups == 1 or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    b, heads, _, dim = query.shape
    packed = query.reshape(b, heads // groups, groups, dim)
    out = torch.nn.functional.scaled_dot_product_attention(
        packed, key, value, attn_mask=attention_mask, scale=kwargs.get("scaling"),
    )
    return out.reshape(b, 1, heads, value.shape[-1]), None


DECODE_ATTENTION = "r1_sdpa_decode"


def use_decode_attention(model: Any) -> None:
    """Switch a transformers model that runs SDPA to `_decode_attention` (same numbers)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", DECODE_ATTENTION):
        return
    ALL_ATTENTION_FUNCTIONS.register(DECODE_ATTENTION, _decode_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(DECODE_ATTENTION, sdpa_mask)
    config._attn_implementation = DECODE_ATTENTION


def packed_linear_available(model: Any) -> bool:
    """oneDNN's prepacked bf16 linear (what torch.compile's CPU backend uses) is there."""
    p = next(model.parameters())
    return (p.device.type == "cpu" and p.dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def pack_linears(model: Any) -> None:
    """Give every nn.Linear a copy of its weight reordered once into oneDNN's blocked layout.

    Plain `F.linear` in bf16 re-lays-out the weight on every call; in a decode step, which
    reads each weight once for a handful of rows, that is ~1/4 of the step (a 1536×576
    projection at 32 rows: 302 → 229 µs; identical results at up to `PACKED_MAX_ROWS` rows, the
    plain weights serve above). Re-run after each weight sync (0.18 s for SmolLM2-135M);
    `unpack_linears` drops the copies (the plain weights serve)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module._r1_packed = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), 32)
            if "forward" not in module.__dict__:
                module.forward = _packed_forward.__get__(module)


def unpack_linears(model: Any) -> None:
    for module in model.modules():
        if getattr(module, "_r1_packed", None) is not None:
            module._r1_packed = None


# oneDNN's packed bf16 matmul gives the plain `F.linear`'s numbers bit for bit at a decode
# step's few rows, not at a prefill's hundreds (measured at SmolLM2's widths: equal up to 256
# rows, different last bits from 384 at 576 outputs): above this many rows the plain weights
# serve, so that the engine samples what the trainer's own forward computes.
PACKED_MAX_ROWS = 256


def _packed_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if self._r1_packed is None or x.numel() > PACKED_MAX_ROWS * x.shape[-1]:
        return torch.nn.functional.linear(x, self.weight, self.bias)
    return torch.ops.mkldnn._linear_pointwise(x, self._r1_packed, self.bias, "none", [], "")


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token id that ends a sequence (the tokenizer's and the generation config's)."""
    ids = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


class HFEngine:
    """Rollouts from a transformers causal LM. See `r1.rollout.base.RolloutEngine`."""

    def __init__(self, model: Any, tokenizer: Any, *, bf16: bool = False, own_copy: bool = True,
                 pack_weights: bool = True, share_weights: bool = False, lean_decode: bool = True):
        """`share_weights`: sample with `model`'s own parameter tensors (no copy of the weights,
        modules of its own so that decode-only changes stay here); the trainer keeps them
        current (a bf16 compute copy refreshed after each step) and `sync_weights` only re-packs."""
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        dtype = torch.bfloat16 if bf16 else next(model.parameters()).dtype
        self._shared = share_weights
        if share_weights:
            if dtype != next(model.parameters()).dtype:
                raise ValueError("share_weights needs a model already in the sampling dtype")
            memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
            self.model = copy.deepcopy(model, memo)  # new modules, the same tensors
        elif own_copy and dtype != next(model.parameters()).dtype:
            self.model = copy.deepcopy(model).to(dtype)
        else:
            self.model = model  # shared with the trainer (LoRA, or no dtype change)
        self.model.eval()
        use_decode_attention(self.model)
        # Prepacked oneDNN weights only on our own bf16 CPU modules (the trainer's stay as they are).
        # Packed at the first generate after a sync, dropped by `release` (the trainer's update
        # does not need them: 0.27 GB of a 135M model's peak).
        self._packed = pack_weights and self.model is not model and packed_linear_available(self.model)
        self._packed_current = False
        # Decode steps without transformers' forward where the architecture allows (exact);
        # its packed copies (q/k/v and gate/up fused) then replace the per-module ones.
        from r1.rollout.decode import LeanDecoder

        self._lean = LeanDecoder.for_model(self.model, packed=self._packed) if lean_decode else None
        self.eos_ids = eos_ids(model, tokenizer)
        self._piece_cache: list[str] | None = None

    def sync_weights(self, model: Any) -> None:
        """Copy the trainer's weights in: a module, or a full state dict (a sharded trainer).
        With shared weights there is nothing to copy; the packed layout is redone at the next
        `generate`."""
        if self.model is model:
            return
        if not self._shared:
            with torch.no_grad():
                src = model if isinstance(model, dict) else dict(model.named_parameters())
                for name, p in self.model.named_parameters():
                    p.copy_(src[name].detach())
        self.release()

    def release(self) -> None:
        """Free what only sampling needs until the next `generate` (the packed weights):
        the trainer calls it before its update, whose activations can then use that memory."""
        if self._lean is not None:
            self._lean.release()
        if self._packed and self._packed_current:
            unpack_linears(self.model)
            self._packed_current = False

    def _pieces(self) -> list[str]:
        if self._piece_cache is None:
            vocab = len(self.tokenizer)
            self._piece_cache = self.tokenizer.batch_decode([[i] for i in range(vocab)])
        return self._piece_cache

    @torch.inference_mode()
    def generate(self, prompt_ids: list[list[int]], n: int, params: SamplingParams) -> Generation:
        t0 = time.perf_counter()
        model, dev = self.model, self.device
        gen = torch.Generator(device=dev).manual_seed(int(params.seed))
        pad = self.tokenizer.pad_token_id
        ids, mask = left_pad(prompt_ids, pad)
        width = ids.shape[1]
        ids, mask = ids.to(dev), mask.to(dev)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        padded = bool((mask == 0).any())
        lean = self._lean if self._lean is not None and self._lean.fits(width + params.max_new_tokens) else None
        if lean is not None:
            lean.pack()  # a no-op while its packs are current
        elif self._packed and not self._packed_current:
            pack_linears(self.model)
            self._packed_current = True

        cache = preallocated_cache(model, width + params.max_new_tokens)
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=positions,
            **with_cache(model, cache), use_cache=True, logits_to_keep=1,
        )
        # One prefill per prompt, shared by its n samples.
        logits = out.logits[:, -1, :].repeat_interleave(n, dim=0)
        cache.batch_repeat_interleave(n)
        mask = mask.repeat_interleave(n, dim=0)
        last_pos = positions[:, -1].repeat_interleave(n, dim=0)

        rows = len(prompt_ids) * n
        completion: list[list[int]] = [[] for _ in range(rows)]
        logprobs: list[list[float]] = [[] for _ in range(rows)]
        finish = ["length"] * rows
        grace = [-1] * rows  # tokens left after a stop string (-1: none seen yet)
        active = torch.arange(rows, device=dev)  # original row index of each batch row
        stop_strings = tuple(s for s in params.stop if s) if not params.ignore_eos else ()
        stop_chars = {s[-1] for s in stop_strings}
        pieces = self._pieces() if stop_strings else []

        # One uniform per row of the whole (possibly sharded) batch at every step, picked by
        # original row: a row's tokens are the same whether it is sampled alone, with other
        # rows, or on another rank of a data-parallel run (`params.row_offset`/`total_rows`).
        total_rows = max(params.total_rows or rows, params.row_offset + rows)
        for step in range(params.max_new_tokens):
            uniforms = torch.rand((total_rows,), generator=gen, device=dev)[params.row_offset + active]
            tokens, lps = sample_tokens(logits, params.temperature, params.top_p, gen, uniforms)
            tok_list, lp_list = tokens.tolist(), lps.tolist()
            keep = []
            for b, row in enumerate(active.tolist()):
                t = tok_list[b]
                completion[row].append(t)
                logprobs[row].append(lp_list[b])
                if t in self.eos_ids and not params.ignore_eos:
                    finish[row] = "stop"
                    continue
                if grace[row] >= 0:  # past a stop string: the model may still end with EOS
                    grace[row] -= 1
                    if grace[row] <= 0:
                        finish[row] = "stop"
                        continue
                elif stop_strings and t < len(pieces) and any(c in pieces[t] for c in stop_chars):
                    tail = self.tokenizer.decode(completion[row][-16:])
                    if any(s in tail for s in stop_strings):
                        grace[row] = params.stop_grace
                        if params.stop_grace <= 0:
                            finish[row] = "stop"
                            continue
                keep.append(b)
            if not keep or step == params.max_new_tokens - 1:
                break
            if len(keep) < len(tok_list):
                idx = torch.tensor(keep, device=dev)
                cache.batch_select_indices(idx)
                active, tokens, mask, last_pos = active[idx], tokens[idx], mask[idx], last_pos[idx]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            last_pos = last_pos + 1
            if lean is not None:
                logits = lean.step(tokens, last_pos, mask if padded else None, cache)
            else:
                out = model(
                    input_ids=tokens[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                    **with_cache(model, cache), use_cache=True,
                )
                logits = out.logits[:, -1, :]

        texts = [self.decode(c) for c in completion]
        return Generation(
            completion_ids=completion, logprobs=logprobs, finish_reasons=finish,
            seconds=time.perf_counter() - t0, texts=texts,
        )

    def decode(self, ids: list[int]) -> str:
        if ids and ids[-1] in self.eos_ids:
            ids = ids[:-1]
        # Special tokens other than the final EOS stay visible: a completion that runs on into
        # `<|im_start|>user…` must not read as cleanly ended to the format reward.
        return self.tokenizer.decode(ids, skip_special_tokens=False)
