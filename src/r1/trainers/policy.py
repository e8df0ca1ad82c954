"""The trainable model and everything that updates it, shared by GRPO and SFT: loading,
gradient checkpointing, LoRA, precision, AdamW, the LR schedule, saving.

Precision (``model.precision``): ``bf16`` trains a bf16 compute copy (no per-op casts, half
the activation traffic) whose gradients are added into fp32 master weights that take the
AdamW step and are copied back; LoRA and ``bf16-autocast`` run fp32 weights under bf16
autocast; ``fp32`` is plain. ``auto`` is bf16 where the hardware has native bf16.

Sharded (`fsdp=FSDPSettings(...)`, under `accelerate launch` with an FSDP config): the
model is wrapped with PyTorch's FSDP2 (`fully_shard` on every decoder layer, then the
root): parameters, gradients and AdamW states are sharded over the ranks, fp32 masters
with bf16 compute and fp32 gradient reduction (`MixedPrecisionPolicy`) — the same scheme
as above, done by FSDP. Full weights are gathered for the sampling engine, checkpoints
and the saved model.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import shutil
from pathlib import Path

import torch

from r1.algorithms.logprobs import entropy, head_logprobs, selective_logprobs
from r1.allocator import return_freed_memory
from r1.config import ModelConfig, OptimConfig
from r1.errors import R1Error
from r1.models import LLAMA_LIKE_TYPES, add_think_tokens, bf16_available, load_model
from r1.padding import left_pad, right_pad
from r1.rollout.kvcache import with_cache


def step_indices(n: int, per_step: int, seed: int, step: int) -> list[int]:
    """Indices into the training set of `step`'s prompts: a seeded permutation per epoch, a
    pure function of the step, so that a resumed run sees exactly the prompts it would have
    seen (and a benchmark can feed another trainer the same order)."""
    out = []
    for k in range(step * per_step, step * per_step + per_step):
        epoch, idx = divmod(k, n)
        order = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        out.append(order[idx])
    return out


def make_scheduler(optimizer, o: OptimConfig, total: int):
    """Linear warmup, then cosine down to min_lr_ratio (or constant) over `total` steps."""

    def factor(step: int) -> float:
        if o.warmup_steps and step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        progress = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return o.min_lr_ratio + (1.0 - o.min_lr_ratio) * cosine

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Policy:
    def __init__(self, mcfg: ModelConfig, ocfg: OptimConfig, total_steps: int, device: str,
                 grad_reduce=None, fsdp=None, is_main: bool = True):
        return_freed_memory(force=mcfg.low_memory)  # or R1_RETURN_FREED_MEMORY=1 (see r1/allocator.py)
        self.device = device
        self.grad_reduce = grad_reduce  # sums gradients over data-parallel ranks (r1.trainers.distributed)
        self.fsdp, self.is_main = fsdp, is_main
        self.loss_scale = 1.0
        self.presharded = None  # FSDP: the full model before sharding (engine, reference), then dropped
        self.model, self.tokenizer = load_model(mcfg.name, device=device)
        if mcfg.think_tokens:
            add_think_tokens(self.model, self.tokenizer)
        precision = mcfg.precision
        if precision == "auto":
            precision = "bf16" if bf16_available(device) else "fp32"
        self.bf16 = precision != "fp32"
        pure_bf16 = precision == "bf16" and not mcfg.lora.enabled
        self.autocast = self.bf16 and not pure_bf16
        self.lora = mcfg.lora.enabled
        if mcfg.checkpointing:
            enable = getattr(self.model, "activation_checkpointing_enable", None) or \
                self.model.gradient_checkpointing_enable  # renamed in transformers 5
            enable()
            self.model.config.use_cache = False
        if mcfg.lora.enabled:
            from peft import LoraConfig, get_peft_model

            lc = mcfg.lora
            self.model = get_peft_model(self.model, LoraConfig(
                r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                target_modules=lc.target_modules, task_type="CAUSAL_LM"))
        self.model.train()
        if fsdp is not None:
            if mcfg.lora.enabled:
                raise R1Error("LoRA with FSDP is not supported: adapters are small, launch with "
                              "recipes/accelerate/ddp.yaml instead")
            self.presharded = copy.deepcopy(self.model)
            self.shard(self.model, bf16=self.bf16)
            # FSDP averages gradients over ranks; r1's loss is already normalised by the whole step
            self.loss_scale = float(fsdp.world)
            pure_bf16 = self.autocast = False
        self.compute_model = copy.deepcopy(self.model).to(torch.bfloat16).train() if pure_bf16 else self.model
        params = [p for p in self.model.parameters() if p.requires_grad]
        # fused AdamW: one kernel over all parameters instead of one per tensor
        self.optimizer = torch.optim.AdamW(params, lr=ocfg.lr, betas=ocfg.betas,
                                           weight_decay=ocfg.weight_decay, fused=fsdp is None)
        self.scheduler = make_scheduler(self.optimizer, ocfg, total_steps)
        self.grad_clip = ocfg.grad_clip

    def shard(self, model, bf16: bool) -> None:
        """FSDP2 on every decoder layer (the classes transformers lists in `_no_split_modules`)
        and on the root."""
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
            else MixedPrecisionPolicy()
        blocks = set(getattr(model, "_no_split_modules", None) or [])
        for module in model.modules():
            if type(module).__name__ in blocks:
                fully_shard(module, reshard_after_forward=self.fsdp.reshard_after_forward, mp_policy=mp)
        fully_shard(model, reshard_after_forward=self.fsdp.reshard_after_forward, mp_policy=mp)

    def backward(self, loss) -> None:
        (loss * self.loss_scale if self.loss_scale != 1.0 else loss).backward()

    def weights_for_sampling(self):
        """What the sampling engine's `sync_weights` takes: the model, or (FSDP) its full
        state dict gathered on every rank."""
        if self.fsdp is None:
            return self.model
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True))

    def checkpoint_states(self) -> tuple[dict, dict]:
        """(trainable weights, optimizer state) to save. FSDP: gathered in full on rank 0
        (a collective: every rank calls it; the others get empty dicts)."""
        from r1.trainers.checkpoint import trainable_state

        if self.fsdp is None:
            return trainable_state(self.model), self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (get_model_state_dict(self.model, options=opts),
                get_optimizer_state_dict(self.model, self.optimizer, options=opts))

    def load_checkpoint_states(self, weights: dict, optim_state: dict) -> None:
        """Restore what `checkpoint_states` saved. FSDP: every rank reads the full
        checkpoint and keeps its shards."""
        from r1.trainers.checkpoint import load_trainable

        if self.fsdp is None:
            load_trainable(self.model, self.optimizer, weights, optim_state)
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions, set_model_state_dict, set_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(self.model, weights, options=opts)
        set_optimizer_state_dict(self.model, self.optimizer, optim_state, options=opts)

    def autocast_ctx(self):
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16)

    def accumulate_grads(self, last: bool = False) -> None:
        """bf16 compute copy: add its gradients (fp32) into the master weights' and free them.
        `last` (the step's last backward): when it was also the first, the gradients stay on
        the compute copy and `step` brings them to fp32 a slice at a time (never a whole fp32
        copy of them)."""
        if self.compute_model is self.model:
            return
        if last and self.grad_reduce is None and all(m.grad is None for m in self.model.parameters()):
            return  # `step` finds them on the compute copy
        for master, work in zip(self.model.parameters(), self.compute_model.parameters()):
            if work.grad is None:
                continue
            if master.grad is None:
                master.grad = work.grad.float()
            else:
                master.grad.add_(work.grad)
            work.grad = None

    @torch.no_grad()
    def refresh_compute_weights(self) -> None:
        if self.compute_model is not self.model:
            for master, work in zip(self.model.parameters(), self.compute_model.parameters()):
                work.copy_(master)

    def step(self) -> float:
        """Clip, AdamW step on the masters, refresh the compute copy; returns the grad norm."""
        if self.compute_model is not self.model and any(w.grad is not None for w in self.compute_model.parameters()):
            return self._sliced_step()  # accumulate_grads left them there (one backward this step)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.grad_reduce is not None:
            self.grad_reduce(params)
        if self.grad_clip > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        else:
            norm = float(torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
        self._check_finite(norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.refresh_compute_weights()
        return norm

    def _check_finite(self, norm: float) -> None:
        if not math.isfinite(norm):  # a step with a NaN/inf gradient would poison every weight
            self.optimizer.zero_grad(set_to_none=True)
            for work in self.compute_model.parameters():
                work.grad = None
            raise R1Error(f"the gradient norm is {norm} (not finite); the weights were not updated, and the "
                          "last checkpoint is intact (try precision: fp32, a lower lr, or grad_clip)")

    def _sliced_step(self, slice_bytes: int = 64 << 20) -> float:
        """`step` with the gradients still in bf16 on the compute copy: the same norm, clipping
        and fused AdamW update as `step` on fp32 gradients (the same numbers: every operation
        is per tensor), run over slices of the parameters of about `slice_bytes` in fp32."""
        pairs = [(m, w) for m, w in zip(self.model.parameters(), self.compute_model.parameters())
                 if m.requires_grad and w.grad is not None]
        slices, size = [[]], 0
        for m, w in pairs:
            if size and size + 4 * m.numel() > slice_bytes:
                slices.append([])
                size = 0
            slices[-1].append((m, w))
            size += 4 * m.numel()
        norms = []
        for part in slices:
            norms += torch._foreach_norm([w.grad.float() for _, w in part])
        total = torch.nn.utils.get_total_norm(norms) if norms else torch.tensor(0.0)
        norm = float(total)
        self._check_finite(norm)
        for part in slices:
            for m, w in part:
                m.grad, w.grad = w.grad.float(), None
            if self.grad_clip > 0:
                torch.nn.utils.clip_grads_with_norm_([m for m, _ in part], self.grad_clip, total)
            self.optimizer.step()  # steps exactly the parameters that now have a gradient
            for m, _ in part:
                m.grad = None
        self.refresh_compute_weights()
        return norm

    def save(self, target: Path, generation: dict | None = None, chat_template: str | None = None) -> None:
        """An HF folder (LoRA merged), written beside and renamed into place (by rank 0;
        with FSDP every rank must call it: the weights are gathered first). `generation`
        updates the folder's generation_config.json; `chat_template` is the saved tokenizer's."""
        state = None
        if self.fsdp is not None:
            state = self.checkpoint_states()[0]
            tied = getattr(self.model, "_tied_weights_keys", None) or []
            if getattr(self.model.config, "tie_word_embeddings", False):  # saved once, as from one process
                state = {k: v for k, v in state.items() if k not in tied}
        if not self.is_main:
            return
        model = copy.deepcopy(self.model).merge_and_unload() if self.lora else self.model
        tmp = target.parent / f".{target.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, state_dict=state)
        own = self.tokenizer.chat_template
        try:
            if chat_template is not None:
                self.tokenizer.chat_template = chat_template
            self.tokenizer.save_pretrained(tmp)
        finally:
            self.tokenizer.chat_template = own
        if generation:
            config = copy.deepcopy(model.generation_config)
            config.update(**generation)
            config.save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)


# -- log-probabilities of completions under the policy (or the reference) -----------------

def pad_batch(prompts: list[list[int]], completions: list[list[int]], pad_id: int):
    """Left-pad prompts, right-pad completions, so every completion starts at column Lp.

    Returns input_ids [b, Lp+Lc], attention_mask [b, Lp+Lc], completion_mask [b, Lc]."""
    ids_p, mask_p = left_pad(prompts, pad_id)
    ids_c, cmask = right_pad(completions, pad_id)
    return torch.cat([ids_p, ids_c], dim=1), torch.cat([mask_p, cmask.long()], dim=1), cmask


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float, with_entropy: bool):
    """log softmax(logits / T) at `targets` ([b, L]), and the entropy when asked (both
    differentiable): without the full fp32 log-softmax (`algorithms.logprobs`)."""
    logp = selective_logprobs(logits, targets, temperature)
    return logp, entropy(logits, temperature) if with_entropy else None


def split_head(model):
    """(decoder, lm_head) of a model whose logits are a plain linear head over the decoder's
    last hidden state, so that the chosen tokens' log-probs can be taken through the head
    without the [tokens, vocab] logits (`algorithms.logprobs.head_logprobs`); else None. Not
    for a model sharded at its root (FSDP gathers the head's weight in the root's forward)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(getattr(base, "config", None), "model_type", None) not in LLAMA_LIKE_TYPES:
        return None
    if type(base).__name__.startswith("FSDP"):  # fully_shard's class; the root must run its own forward
        return None
    head = base.get_output_embeddings()
    if type(head) is not torch.nn.Linear:  # e.g. a LoRA-adapted head
        return None
    return base.get_decoder(), head


def chosen_logprobs(model, targets: torch.Tensor, temperature: float, with_entropy: bool, *, skip_last: bool,
                    **inputs):
    """log-probs (and entropies) of `targets` [b, n], predicted by the last n positions of
    `model(**inputs)` (the last n + 1 but one with `skip_last`): through the decoder and the
    fused head where `split_head` allows, else from the model's logits of those positions."""
    n = targets.shape[1]
    parts = split_head(model)
    if parts is None:
        logits = model(**inputs, logits_to_keep=n + skip_last).logits
        return token_logprobs(logits[:, :-1] if skip_last else logits, targets, temperature, with_entropy)
    decoder, head = parts
    hidden = decoder(**inputs).last_hidden_state
    hidden = hidden[:, -n - 1 : -1] if skip_last else hidden[:, -n:]
    return head_logprobs(hidden, head.weight, targets, temperature, head.bias, with_entropy)


def completion_logprobs(model, ids, attn, lc: int, temperature: float, with_entropy: bool = False):
    """log pi(token) at the Lc completion positions: [b, Lc] (and the entropy [b, Lc]).

    Only the completion positions go through the LM head: the prompt's logits are never
    made (nor, for most models, the completion's whole: `chosen_logprobs`)."""
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    return chosen_logprobs(model, ids[:, -lc:], temperature, with_entropy, skip_last=True, input_ids=ids,
                           attention_mask=attn, position_ids=positions, use_cache=False)


def shared_prefix_logprobs(model, prompts: list[list[int]], completions: list[list[int]], group: int,
                           pad_id: int, temperature: float, with_entropy: bool = False, device="cpu"):
    """Like `completion_logprobs`, but each prompt goes through the model once for its
    `group` completions: the prompt's keys/values are computed once and repeated (a
    differentiable repeat, so gradients through the prompt are summed, exactly as if it
    had been processed G times). Rows: completion j of prompt i at i*group + j.

    Returns (logp [b, Lc], entropy [b, Lc] or None, completion mask [b, Lc])."""
    from transformers import DynamicCache

    ids_p, mask_p = left_pad(prompts, pad_id)
    ids_c, cmask = right_pad(completions, pad_id)
    lc = ids_c.shape[1]
    ids_p, mask_p, ids_c, cmask = ids_p.to(device), mask_p.to(device), ids_c.to(device), cmask.to(device)
    cache = DynamicCache(config=model.config)
    pos_p = (mask_p.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids_p, attention_mask=mask_p, position_ids=pos_p, **with_cache(model, cache),
                use_cache=True, logits_to_keep=1)
    first = out.logits[:, -1:, :].repeat_interleave(group, dim=0)  # predicts completion token 0
    cache.batch_repeat_interleave(group)
    mask_rep = mask_p.repeat_interleave(group, dim=0)
    attn = torch.cat([mask_rep, cmask.long()], dim=1)
    pos_c = mask_rep.sum(-1, keepdim=True) + torch.arange(lc, device=device)[None, :]
    parts = [token_logprobs(first, ids_c[:, :1], temperature, with_entropy)]
    if lc > 1:  # the rest apart: joining their logits to `first` would copy them all
        parts.append(chosen_logprobs(model, ids_c[:, 1:], temperature, with_entropy, skip_last=False,
                                     input_ids=ids_c[:, :-1], attention_mask=attn[:, :-1],
                                     position_ids=pos_c[:, :-1], **with_cache(model, cache), use_cache=True))
    logp = torch.cat([p[0] for p in parts], dim=1)
    entropy = torch.cat([p[1] for p in parts], dim=1) if with_entropy else None
    return logp, entropy, cmask
