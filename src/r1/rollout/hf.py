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
from r1.rollout.kernels import pack_linears, packed_linear_available, unpack_linears, use_decode_attention
from r1.rollout.kvcache import preallocated_cache, with_cache
from r1.rollout.sampling import sample_tokens
from r1.types import Generation, SamplingParams


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
        # does not need them, and they would add to its peak).
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
