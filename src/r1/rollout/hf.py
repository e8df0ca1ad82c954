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

from r1.types import Generation, SamplingParams


def sample_tokens(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row. logits [b, V] -> (tokens [b], logprobs [b]).

    The log-probability is taken under softmax(logits / T) over the full vocabulary (the
    distribution the trainer recomputes), not the top-p truncated one. T = 0 is greedy."""
    logits = logits.float()
    if temperature <= 0:
        tokens = logits.argmax(-1)
        return tokens, torch.log_softmax(logits, -1).gather(-1, tokens[:, None])[:, 0]
    logp = torch.log_softmax(logits / temperature, dim=-1)
    probs = logp.exp()
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = (sorted_p.cumsum(-1) - sorted_p) >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        choice = torch.multinomial(sorted_p, 1, generator=generator)
        tokens = order.gather(-1, choice)[:, 0]
    else:
        tokens = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return tokens, logp.gather(-1, tokens[:, None])[:, 0]


class HFEngine:
    """Rollouts from a transformers causal LM. See `r1.rollout.base.RolloutEngine`."""

    def __init__(self, model: Any, tokenizer: Any, *, bf16: bool = False, own_copy: bool = True):
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        dtype = torch.bfloat16 if bf16 else next(model.parameters()).dtype
        if own_copy and dtype != next(model.parameters()).dtype:
            self.model = copy.deepcopy(model).to(dtype)
        else:
            self.model = model  # shared with the trainer (LoRA, or no dtype change)
        self.model.eval()
        self.eos_ids = self._eos_ids(model, tokenizer)
        self._piece_cache: list[str] | None = None

    @staticmethod
    def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
        ids = set()
        for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return ids

    def sync_weights(self, model: Any) -> None:
        if self.model is model:
            return
        with torch.no_grad():
            src = dict(model.named_parameters())
            for name, p in self.model.named_parameters():
                p.copy_(src[name].detach())

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
        lengths = [len(p) for p in prompt_ids]
        width = max(lengths)
        ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
        for i, p in enumerate(prompt_ids):
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)

        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=positions,
            past_key_values=cache, use_cache=True, logits_to_keep=1,
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
        active = torch.arange(rows, device=dev)  # original row index of each batch row
        stop_strings = tuple(s for s in params.stop if s) if not params.ignore_eos else ()
        stop_chars = {s[-1] for s in stop_strings}
        pieces = self._pieces() if stop_strings else []

        for step in range(params.max_new_tokens):
            tokens, lps = sample_tokens(logits, params.temperature, params.top_p, gen)
            tok_list, lp_list = tokens.tolist(), lps.tolist()
            keep = []
            for b, row in enumerate(active.tolist()):
                t = tok_list[b]
                completion[row].append(t)
                logprobs[row].append(lp_list[b])
                if t in self.eos_ids and not params.ignore_eos:
                    finish[row] = "stop"
                    continue
                if stop_strings and t < len(pieces) and any(c in pieces[t] for c in stop_chars):
                    tail = self.tokenizer.decode(completion[row][-16:])
                    if any(s in tail for s in stop_strings):
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
            out = model(
                input_ids=tokens[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                past_key_values=cache, use_cache=True,
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
        return self.tokenizer.decode(ids, skip_special_tokens=True)
