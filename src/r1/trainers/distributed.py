"""Data parallelism for the trainers: one process per device, launched by `accelerate
launch` (or `torchrun`), the process group set up by accelerate's `PartialState` (NCCL on
GPUs, gloo on CPUs).

How a GRPO step is split: rank r takes prompts [r·P/W, (r+1)·P/W) of the step and all G
samples of each, so every group (and its advantage) lives on one rank; the random draws
are made for the whole step's rows (`SamplingParams.row_offset`), so a shard samples what
one process would. The loss is normalised by the step's global token/sequence counts and
the fp32 master gradients are summed across ranks before clipping: every rank then takes
the same AdamW step, and W processes end the step with the parameters one process would
have with the combined batch (`tests/test_distributed.py`).

Sharded (an FSDP accelerate config): the policy wraps the model with PyTorch FSDP2
(`Policy.shard`), which reduce-scatters the gradients itself; the rest is the same.
DeepSpeed is refused with a pointer to the FSDP configs (its ZeRO-2/3 layouts are FSDP's
SHARD_GRAD_OP/FULL_SHARD): its engine needs a CUDA device and a fixed number of
micro-batches per step, which GRPO (groups skipped when their rewards are equal) lacks.

Why the gradients are reduced here and not by wrapping the model in DDP: the bf16 compute
copy's gradients are folded into fp32 master weights after every micro-batch; DDP would
all-reduce the bf16 gradients of each micro-batch (or, with no_sync, force accumulating in
bf16). One flattened fp32 all-reduce per optimizer step is what DDP does, at the right
precision and once. Only rank 0 writes checkpoints, metrics, reports and the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from r1.errors import R1Error


@dataclass(frozen=True)
class FSDPSettings:
    """Sharding as `accelerate launch` passes it from an FSDP config (FSDP_* variables)."""

    world: int
    reshard_after_forward: bool = True  # FULL_SHARD (≈ ZeRO-3); False: SHARD_GRAD_OP (≈ ZeRO-2)


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes")


def _env_flag(name: str) -> bool:
    return _truthy(os.environ.get(name, ""))


def fsdp_from_env(world: int) -> FSDPSettings | None:
    if not _env_flag("ACCELERATE_USE_FSDP"):
        return None
    reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD")
    if reshard is None:  # FSDP1-style names
        reshard = "false" if os.environ.get("FSDP_SHARDING_STRATEGY", "").upper() in (
            "SHARD_GRAD_OP", "2", "_HYBRID_SHARD_ZERO2", "5") else "true"
    return FSDPSettings(world=world, reshard_after_forward=_truthy(reshard))


def launched_world_size() -> int:
    """WORLD_SIZE as set by accelerate launch / torchrun (1 when run directly)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


class Dist:
    """The process group as this process sees it; a single process is a group of one."""

    def __init__(self) -> None:
        self.world, self.rank, self.local_rank, self.device = 1, 0, 0, None
        self._dist = None
        self.fsdp: FSDPSettings | None = None
        if _env_flag("ACCELERATE_USE_DEEPSPEED"):
            raise R1Error("DeepSpeed is not supported by r1's trainer: launch with recipes/accelerate/fsdp.yaml "
                          "(FULL_SHARD, the ZeRO-3 layout) or fsdp-grad-op.yaml (SHARD_GRAD_OP, the ZeRO-2 layout)")
        if launched_world_size() > 1:
            import torch
            import torch.distributed as dist
            from accelerate import PartialState

            state = PartialState(cpu=not torch.cuda.is_available())
            self.world, self.rank, self.local_rank = state.num_processes, state.process_index, state.local_process_index
            dev = torch.device(state.device)
            self.device = dev.type if dev.type == "cpu" else str(dev)
            self._dist = dist
            self.fsdp = fsdp_from_env(self.world)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def grad_reduce(self):
        """What `Policy` calls to sum gradients over ranks: `all_reduce_grads` with data
        parallelism, None with one process (nothing to sum, so the policy may step on its bf16
        gradients a slice at a time) or under FSDP (which reduces them itself)."""
        return self.all_reduce_grads if self.enabled and self.fsdp is None else None

    def prepare_run_dir(self, out: Any, resume: bool) -> bool:
        """Rank 0 prepares (or refuses) the run directory; every rank gets the outcome."""
        from r1.trainers import checkpoint as ckpt

        outcome: Any = None
        if self.is_main:
            try:
                outcome = ckpt.prepare_run_dir(out, resume)
            except R1Error as e:
                outcome = e
        outcome = self.broadcast(outcome)
        if isinstance(outcome, R1Error):
            raise outcome
        return outcome

    def shard(self, items: list, what: str = "prompts_per_step") -> list:
        """This rank's contiguous share of `items` (the same length on every rank)."""
        if len(items) % self.world:
            raise R1Error(f"{what} ({len(items)}) must be a multiple of the number of processes ({self.world})")
        per = len(items) // self.world
        return items[self.rank * per : (self.rank + 1) * per]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64 on the CPU group, exact for counts)."""
        if not self.enabled:
            return list(values)
        import torch

        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        self._dist.all_reduce(t)
        return t.tolist()

    def max(self, value: int | float) -> int | float:
        """The largest `value` over ranks (an int or a float, returned as the same type)."""
        if not self.enabled:
            return value
        import torch

        kind = float if isinstance(value, float) else int
        t = torch.tensor([value], dtype=torch.float64 if kind is float else torch.int64, device=self._comm_device())
        self._dist.all_reduce(t, op=self._dist.ReduceOp.MAX)
        return kind(t.item())

    def all_reduce_grads(self, params: list[Any]) -> None:
        """Sum the gradients of `params` over ranks, in one flattened buffer. A parameter
        that got no gradient here (e.g. this rank's groups were all uniform) counts as zero."""
        if not self.enabled:
            return
        import torch

        grads = []
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        flat = torch.cat([g.reshape(-1) for g in grads]).to(self._comm_device())
        self._dist.all_reduce(flat)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (picklable objects)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        self._dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            self._dist.barrier()

    def _comm_device(self) -> str:
        return "cpu" if self.device in (None, "cpu") else self.device
