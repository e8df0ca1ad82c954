"""The transformers serving engine (the interface all serving engines share, token ids in,
token ids out, many requests at once, is `r1.serve.interface`).

`HFBatchEngine` runs a transformers model in one background thread with continuous
batching: every decode step is one forward pass over all running requests, and a request
that arrives joins at the next step (its prompt is prefilled, its KV cache left-padded to
the batch's length and stacked under it) instead of waiting for the batch to drain. Rows
leave as soon as they finish or their client goes away. `max_batch=1` gives one request
at a time (the baseline of `benchmarks/serve_load.py`).

The vLLM engine (`r1.serve.vllm_engine`, extra `gpu`) implements the same interface.

Text is not this module's business: the app turns token ids into text, stop strings and
reasoning/content deltas, and cancels a request when a stop string appears.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from r1.errors import R1Error
from r1.padding import left_pad
from r1.rollout import sampling  # sampling.sample_tokens looked up per call (tests inject faults into it)
from r1.rollout.hf import eos_ids
from r1.rollout.kernels import pack_linears, packed_linear_available, use_decode_attention
from r1.rollout.kvcache import drop_front, is_preallocated, pad_left, preallocated_cache, stack_layer, with_cache
from r1.serve.interface import (EngineRequest, EngineUnavailable, QueueFull, RequestHandle, Step, TokenLogprob,
                                deliver)

log = logging.getLogger(__name__)


class _MergeFailed(Exception):
    """Stacking new rows under the running batch failed half-way: the whole batch ends."""


@dataclass
class _Row:
    handle: RequestHandle
    generated: int = 0
    generator: Any = None


@dataclass
class _Batch:
    rows: list[_Row] = field(default_factory=list)
    cache: Any = None
    mask: Any = None  # [B, T] attention mask over the cache
    last_pos: Any = None  # [B] position of each row's last token
    logits: Any = None  # [B, V] next-token logits, not yet sampled


class HFBatchEngine:
    """Continuous batching over a transformers causal LM. See the module docstring.

    Fault isolation: a failure while admitting, prefilling or sampling for one request ends
    that request alone with an error (a failed group prefill is retried one request at a
    time to find the culprit); a failure of the shared decode forward, which cannot be
    traced to one row, ends the rows of that step and the engine goes on with the queue.
    After `MAX_CONSECUTIVE_FAILURES` failures with no successful decode step between them,
    /health says 503 (a broken device, not a bad request) until a step succeeds again;
    requests keep being tried and answered meanwhile, never left waiting."""

    MAX_CONSECUTIVE_FAILURES = 8

    def __init__(self, model: Any, tokenizer: Any, *, model_name: str, max_batch: int = 32,
                 max_queue: int = 256, max_prefill_tokens: int = 4096, seed: int = 0):
        if max_batch < 1 or max_queue < 0:
            raise R1Error("max_batch must be >= 1 and max_queue >= 0")
        self.model, self.tokenizer, self.model_name = model, tokenizer, model_name
        self.model.eval()
        use_decode_attention(self.model)
        self.device = next(model.parameters()).device
        self.max_model_len = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        # Decode steps without transformers' forward where the architecture allows (the same
        # logits, `rollout.decode`); its fused packed weights then serve in place of the modules'.
        from r1.rollout.decode import LeanDecoder

        packed = packed_linear_available(self.model)
        self._lean = LeanDecoder.for_model(self.model, packed=packed)
        if self._lean is not None and not self._lean.fits(self.max_model_len):
            self._lean = None  # a sliding window shorter than a request may grow: the model's forward
        if self._lean is not None:
            self._lean.pack()
        elif packed:
            pack_linears(self.model)
        self.max_batch, self.max_queue, self.max_prefill_tokens = max_batch, max_queue, max_prefill_tokens
        self.eos_ids = eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._gen = torch.Generator(device=self.device).manual_seed(seed)
        self._pending: collections.deque[RequestHandle] = collections.deque()
        self._cv = threading.Condition()
        self._batch = _Batch()
        self._closed = False  # no new requests (shutdown or close)
        self._stop_at: Optional[float] = None  # when the loop ends, whatever is still running
        self._error: Optional[str] = None
        self._thread: Optional[threading.Thread] = None
        self._failures_in_a_row = 0
        self.counters = {"requests": 0, "tokens": 0, "steps": 0, "rows_stepped": 0, "max_rows": 0,
                         "request_errors": 0}

    # -- the asyncio side -------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="r1-serve-engine", daemon=True)
            self._thread.start()

    def submit(self, request: EngineRequest) -> RequestHandle:
        handle = RequestHandle(request, asyncio.get_running_loop())
        with self._cv:
            if self._closed or self._error:
                raise EngineUnavailable(self._error or "the engine is shutting down")
            if len(self._pending) >= self.max_queue:
                raise QueueFull(f"{len(self._pending)} requests are waiting (the bound is {self.max_queue})")
            self._pending.append(handle)
            self.counters["requests"] += 1
            self._cv.notify()
        return handle

    def stats(self) -> dict:
        with self._cv:
            return {"running": len(self._batch.rows), "waiting": len(self._pending),
                    "max_batch": self.max_batch, "max_queue": self.max_queue,
                    "healthy": (self._error is None and not self._closed
                                and self._failures_in_a_row < self.MAX_CONSECUTIVE_FAILURES),
                    "failures_in_a_row": self._failures_in_a_row, **self.counters}

    def close(self, grace: float = 0.0) -> None:
        """Take no new requests; those running or waiting get `grace` seconds to finish, then
        end with finish "shutdown". Returns at once (safe from a signal handler)."""
        with self._cv:
            self._closed = True
            stop_at = time.monotonic() + max(grace, 0.0)
            self._stop_at = stop_at if self._stop_at is None else min(self._stop_at, stop_at)
            self._cv.notify()

    def shutdown(self) -> None:
        self.close(0.0)
        if self._thread is not None:
            self._thread.join(timeout=30)

    # -- the engine thread ------------------------------------------------------------

    def _run(self) -> None:
        try:
            with torch.inference_mode():
                while self._loop_once():
                    pass
        except BaseException as e:  # noqa: BLE001 — the loop itself broke: answer everyone, say so
            with self._cv:
                self._error = f"engine failed: {type(e).__name__}: {e}"
            log.exception("the serving engine stopped")
        finally:
            with self._cv:
                leftover = [r.handle for r in self._batch.rows] + list(self._pending)
                self._pending.clear()
                self._batch = _Batch()
                error = self._error
            deliver([(h, Step([], "error" if error else "shutdown", error=error)) for h in leftover])

    def _loop_once(self) -> bool:
        """One round: admit what fits, take one decode step. False when the loop should end."""
        with self._cv:
            while not self._closed and not self._pending and not self._batch.rows:
                self._cv.wait()
            if self._closed:
                waiting = list(self._pending)  # not started: no reason to keep them waiting out the grace
                self._pending.clear()
                deliver([(h, Step([], "shutdown")) for h in waiting])
                if time.monotonic() >= (self._stop_at or 0.0) or not self._batch.rows:
                    return False
            admitted = [] if self._closed else self._take_pending()
        try:
            if admitted:
                self._admit_isolated(admitted)
            if self._batch.rows:
                self._step()
                self._failures_in_a_row = 0
        except Exception as e:  # noqa: BLE001 — a shared forward failed: its rows end, the queue goes on
            log.exception("a decode step failed; ending its %d rows", len(self._batch.rows))
            with self._cv:
                rows, self._batch = self._batch.rows, _Batch()
            self._fail([r.handle for r in rows], e)
        return True

    def _fail(self, handles: list[RequestHandle], e: BaseException) -> None:
        self._failures_in_a_row += 1
        self.counters["request_errors"] += len(handles)
        message = f"{type(e).__name__}: {e}"
        deliver([(h, Step([], "error", error=message)) for h in handles])

    def _admit_isolated(self, handles: list[RequestHandle]) -> None:
        """Admit the group; if its prefill fails, admit its requests one by one, so that only
        the request that fails is answered with an error."""
        try:
            self._admit(handles)
            return
        except _MergeFailed:
            raise
        except Exception as e:  # noqa: BLE001
            if len(handles) == 1:
                log.warning("request failed at admission: %s: %s", type(e).__name__, e)
                self._fail(handles, e)
                return
        for h in handles:
            self._admit_isolated([h])

    def _mergeable(self) -> bool:
        cache = self._batch.cache
        return cache is None or is_preallocated(cache)

    def _take_pending(self) -> list[RequestHandle]:
        """Under the lock: drop cancelled/expired waiting requests; take as many as fit."""
        now, out, budget = time.monotonic(), [], self.max_prefill_tokens
        gone = []
        for handle in list(self._pending):
            if handle.cancelled or (handle.request.deadline is not None and now > handle.request.deadline):
                self._pending.remove(handle)
                gone.append((handle, Step([], "cancelled" if handle.cancelled else "timeout")))
        deliver(gone)
        if self._batch.rows and not self._mergeable():
            return out
        room = self.max_batch - len(self._batch.rows)
        while self._pending and len(out) < room:
            n = len(self._pending[0].request.prompt_ids)
            if out and n > budget:
                break
            budget -= n
            out.append(self._pending.popleft())
        return out

    def _admit(self, handles: list[RequestHandle]) -> None:
        """Prefill the new requests together and stack them under the running batch."""
        ids, mask = left_pad([h.request.prompt_ids for h in handles], self.pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        vocab = self.model.config.vocab_size
        if int(ids.max()) >= vocab or int(ids.min()) < 0:
            raise ValueError(f"a prompt token id is outside the vocabulary (0..{vocab - 1})")
        rows = [_Row(h, generator=self._row_generator(h.request)) for h in handles]
        room = max(h.request.max_tokens for h in handles)
        cache = preallocated_cache(self.model, ids.shape[1] + room)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         **with_cache(self.model, cache), use_cache=True, logits_to_keep=1)
        new = _Batch(rows=rows, cache=cache, mask=mask, last_pos=positions[:, -1], logits=out.logits[:, -1, :])
        old = self._batch
        if not old.rows:
            self._batch = new
            return
        try:  # from here the running batch is changed in place: a failure ends it (the caller's business)
            width = max(old.mask.shape[1], mask.shape[1])
            capacity = width + max(self._remaining(r) for r in old.rows + rows)
            for layer_old, layer_new in zip(old.cache.layers, new.cache.layers):
                stack_layer(layer_old, layer_new, width, capacity)
            self._batch = _Batch(
                rows=old.rows + rows, cache=old.cache,
                mask=torch.cat([pad_left(old.mask, width), pad_left(mask, width)]),
                last_pos=torch.cat([old.last_pos, new.last_pos]),
                logits=torch.cat([old.logits, new.logits]),
            )
        except Exception as e:
            self._batch.rows = old.rows + rows  # all of them end with the error
            raise _MergeFailed(f"{type(e).__name__}: {e}") from e

    @staticmethod
    def _remaining(row: _Row) -> int:
        return max(row.handle.request.max_tokens - row.generated, 1)

    def _row_generator(self, request: EngineRequest):
        if request.seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(int(request.seed))

    def _sample(self, logits: Any) -> tuple[list[Optional[int]], dict[int, str]]:
        """One token per row, honouring each row's temperature, top-p and seed; a group whose
        sampling fails gets None tokens and its error (its rows end, the others go on)."""
        rows = self._batch.rows
        groups: dict[tuple, list[int]] = {}
        for b, row in enumerate(rows):
            req = row.handle.request
            key = (req.temperature, req.top_p, b if row.generator is not None else -1)
            groups.setdefault(key, []).append(b)
        tokens: list[Optional[int]] = [None] * len(rows)
        errors: dict[int, str] = {}
        for (t, p, seeded), idx in groups.items():
            gen = rows[seeded].generator if seeded >= 0 else self._gen
            try:
                picked = logits if len(groups) == 1 else logits[torch.tensor(idx, device=logits.device)]
                for b, token in zip(idx, sampling.sample_tokens(picked, t, p, gen)[0].tolist()):
                    tokens[b] = token
            except Exception as e:  # noqa: BLE001
                log.warning("sampling failed for %d request(s): %s: %s", len(idx), type(e).__name__, e)
                errors.update({b: f"{type(e).__name__}: {e}" for b in idx})
        return tokens, errors

    def _logprobs(self, logits: Any, tokens: list[Optional[int]]) -> dict[int, list[TokenLogprob]]:
        """Raw log-probs of the sampled tokens (and the top-k) for the rows that asked."""
        want = [b for b, r in enumerate(self._batch.rows)
                if r.handle.request.logprobs is not None and tokens[b] is not None]
        if not want:
            return {}
        index = torch.tensor(want, device=logits.device)
        lp = torch.log_softmax(logits[index].float(), dim=-1)
        chosen = lp.gather(-1, torch.tensor([tokens[b] for b in want], device=lp.device)[:, None])[:, 0].tolist()
        k = max(self._batch.rows[b].handle.request.logprobs for b in want)
        top_v, top_i = (t.tolist() for t in lp.topk(k, dim=-1))
        out = {}
        for j, b in enumerate(want):
            kb = self._batch.rows[b].handle.request.logprobs
            out[b] = [TokenLogprob(tokens[b], chosen[j], list(zip(top_i[j][:kb], top_v[j][:kb])))]
        return out

    def _step(self) -> None:
        batch = self._batch
        tokens, errors = self._sample(batch.logits)
        logprobs = self._logprobs(batch.logits, tokens)
        now, keep, deliveries = time.monotonic(), [], []
        for b, (row, token) in enumerate(zip(batch.rows, tokens)):
            req = row.handle.request
            if token is None:
                deliveries.append((row.handle, Step([], "error", error=errors[b])))
                self.counters["request_errors"] += 1
                continue
            row.generated += 1
            finish = None
            if row.handle.cancelled:
                finish = "cancelled"
            elif token in self.eos_ids and not req.ignore_eos:
                finish = "stop"
            elif row.generated >= req.max_tokens:
                finish = "length"
            elif req.deadline is not None and now > req.deadline:
                finish = "timeout"
            elif self._stop_at is not None and now >= self._stop_at:
                finish = "shutdown"
            deliveries.append((row.handle, Step([token], finish, logprobs=logprobs.get(b))))
            if finish is None:
                keep.append(b)
        deliver(deliveries)
        sampled = [t for t in tokens if t is not None]
        self.counters["tokens"] += len(sampled)
        self.counters["steps"] += 1
        self.counters["rows_stepped"] += len(sampled)
        self.counters["max_rows"] = max(self.counters["max_rows"], len(tokens))
        if not keep:
            with self._cv:
                self._batch = _Batch()
            return
        # a row whose sampling failed is not in `keep`: its placeholder token is dropped below
        token_t = torch.tensor([self.pad_id if t is None else t for t in tokens], device=self.device)
        if len(keep) < len(tokens):
            index = torch.tensor(keep, device=self.device)
            batch.cache.batch_select_indices(index)
            batch.rows = [batch.rows[b] for b in keep]
            batch.mask, batch.last_pos, token_t = batch.mask[index], batch.last_pos[index], token_t[index]
            self._trim_padding(batch)
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones((batch.mask.shape[0], 1))], dim=1)
        batch.last_pos = batch.last_pos + 1
        if self._lean is not None and is_preallocated(batch.cache):
            batch.logits = self._lean.step(token_t, batch.last_pos, batch.mask, batch.cache)
            return
        out = self.model(input_ids=token_t[:, None], attention_mask=batch.mask,
                         position_ids=batch.last_pos[:, None], **with_cache(self.model, batch.cache),
                         use_cache=True)
        batch.logits = out.logits[:, -1, :]

    @staticmethod
    def _trim_padding(batch: _Batch) -> None:
        """When the rows that needed the longest left padding have left, drop the columns
        nobody attends to any more (only worth a copy when it is a real share of the cache)."""
        used = batch.mask.any(0).nonzero()
        start = int(used[0]) if len(used) else 0
        if start < 64 or not is_preallocated(batch.cache):
            return
        for layer in batch.cache.layers:
            drop_front(layer, start)
        batch.mask = batch.mask[:, start:]
