"""The policy update of a GRPO step: the reference log-probs of the rows that enter the
loss, then μ optimizer passes of the registered policy loss (clipped surrogate, Clip-Cov or
KL-Cov; truncated importance weights for another engine's samples) − the entropy bonus
+ β·KL, aggregated by `algorithms.losses.agg_loss` over the whole step's tokens, with
log-probs at the temperature the step sampled at. Micro-batches are whole groups when the prompt prefix is shared; a
sharded model runs every rank in lockstep."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch

from r1.algorithms.losses import PolicyLossParams
from r1.algorithms.objective import MicroBatch, ObjectiveParams, grpo_objective
from r1.config import Config
from r1.errors import R1Error
from r1.trainers.policy import Policy, completion_logprobs, pad_batch, shared_prefix_logprobs
from r1.trainers.steps import non_finite_loss
from r1.types import Rollout


class PolicyUpdate:
    """Turns a scored rollout's loss rows into optimizer steps of `policy` (and the
    reference log-probs they need)."""

    def __init__(self, cfg: Config, policy: Policy, dist: Any, ref_model: Any, *, share_prefix: bool,
                 device: Any, pad_id: int):
        self.cfg, self.policy, self.dist, self.ref_model = cfg, policy, dist, ref_model
        self.share_prefix, self.device, self.pad_id = share_prefix, device, pad_id
        algo = cfg.algorithm
        tis = algo.rollout_correction == "tis" or (algo.rollout_correction == "auto" and cfg.rollout.engine != "hf")
        self.objective = ObjectiveParams(
            policy_loss=algo.policy_loss, loss_agg=algo.loss_agg, beta=algo.beta, kl_estimator=algo.kl_estimator,
            tis_cap=algo.tis_cap if tis else None, max_len=float(cfg.rollout.max_new_tokens),
            loss=PolicyLossParams(clip_low=algo.clip_low, clip_high=algo.clip_high, cov_ratio=algo.cov_ratio,
                                  clip_cov_lb=algo.clip_cov_bounds[0], clip_cov_ub=algo.clip_cov_bounds[1],
                                  kl_cov_coef=algo.kl_cov_coef))

    def _micro_batches(self, rollout: Rollout, rows: list[int]):
        """Chunks of `rows` (whole groups when the prompt prefix is shared)."""
        mb, g = self.cfg.optim.micro_batch_size, rollout.group_size
        if self.share_prefix:
            groups = sorted({i // g for i in rows})
            per = max(1, mb // g)
            for s in range(0, len(groups), per):
                yield [i for grp in groups[s : s + per] for i in range(grp * g, grp * g + g)]
        else:
            for s in range(0, len(rows), mb):
                yield rows[s : s + mb]

    def _lockstep(self, rollout: Rollout, rows: list[int]) -> list[tuple[list[int], bool]]:
        """(micro-batch, real) pairs. A sharded model gathers its weights in every forward and
        backward, so every rank must run as many micro-batches as the busiest rank: the others
        add dummy ones (a group of theirs, weight 0) that only keep the collectives in step."""
        parts = [(part, True) for part in self._micro_batches(rollout, rows)]
        if self.dist.fsdp is None:
            return parts
        most = self.dist.max(len(parts))
        dummy = parts[0][0] if parts else list(range(min(rollout.group_size, rollout.size)))
        return parts + [(dummy, False)] * (most - len(parts))

    def _logprobs(self, model, rollout: Rollout, part: list[int], with_entropy: bool = False):
        """(logp [b, Lc], entropy, completion mask [b, Lc]) of the completions in `part`."""
        g, pad, temp = rollout.group_size, self.pad_id, self.temperature(rollout)
        completions = [rollout.generation.completion_ids[i] for i in part]
        if self.share_prefix:
            prompts = [rollout.prompt_ids[i // g] for i in part[::g]]
            logp, entropy, cmask = shared_prefix_logprobs(model, prompts, completions, g, pad, temp, with_entropy,
                                                          self.device)
            return logp, entropy, _model_tokens(rollout, part, cmask)
        ids, attn, cmask = pad_batch([rollout.prompt_ids[i // g] for i in part], completions, pad)
        ids, attn, cmask = ids.to(self.device), attn.to(self.device), cmask.to(self.device)
        logp, entropy = completion_logprobs(model, ids, attn, cmask.shape[1], temp, with_entropy)
        return logp, entropy, _model_tokens(rollout, part, cmask)

    def temperature(self, rollout: Rollout) -> float:
        """The temperature the rollout was sampled at (the loss's log-probs are taken at it)."""
        return self.cfg.rollout.temperature if rollout.temperature is None else rollout.temperature

    @torch.no_grad()
    def ref_logprobs(self, rollout: Rollout) -> None:
        """`rollout.ref`: the reference model's log-probs of the loss rows (with beta > 0)."""
        rollout.ref = {}
        if self.cfg.algorithm.beta <= 0:
            return
        model = self.policy.model if self.ref_model is None else self.ref_model
        ctx = model.disable_adapter() if self.ref_model is None else contextlib.nullcontext()
        with ctx, self.policy.autocast_ctx():
            for part, real in self._lockstep(rollout, rollout.rows):
                lp, _, _ = self._logprobs(model, rollout, part)
                if real:
                    rollout.ref.update({i: lp[j] for j, i in enumerate(part)})

    def update(self, rollout: Rollout) -> None:
        """One optimizer step (μ of them) on this rank's loss rows, normalised by the whole
        step's token and sequence counts (`Policy.step` sums the gradients over ranks); sets
        `rollout.update` (its statistics) and `rollout.stepped`."""
        rows, gen = rollout.rows, rollout.generation
        own = [len(c) for c in gen.completion_ids] if gen.loss_masks is None else [sum(m) for m in gen.loss_masks]
        num_tokens, num_seqs = self.dist.sum([float(sum(own[i] for i in rows)), float(len(rows))])
        rollout.stepped = num_seqs > 0
        rollout.update = self._update(rollout, num_tokens, num_seqs)

    def _update(self, rollout: Rollout, num_tokens: float, num_seqs: float) -> dict[str, float]:
        algo, rows = self.cfg.algorithm, rollout.rows
        if not num_seqs:  # every group was uniform: no gradient, but the schedule still advances
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                self.policy.scheduler.step()
            return {"grad_norm": 0.0, "clip_frac": 0.0, "kl": 0.0, "entropy": float("nan"), "loss": 0.0}
        means = _Means()
        ratio_dev = mismatch_max = grad_norm = 0.0
        saved: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # row -> (pi_old, engine log-probs), for passes > 1
        row_set = set(rows)
        # Clip-Cov's random picks: a pure function of the run's seed and the step (a resumed run picks the same)
        picks = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + rollout.step)
        self.policy.compute_model.train()
        for epoch in range(algo.mu):
            self.policy.optimizer.zero_grad(set_to_none=True)
            parts = self._lockstep(rollout, rows)
            for k, (part, real) in enumerate(parts):
                with self.policy.autocast_ctx():
                    logp, entropy, cmask = self._logprobs(self.policy.compute_model, rollout, part, with_entropy=True)
                if not real:  # keeps a sharded model's collectives in step; contributes nothing
                    self.policy.backward(logp.sum() * 0.0)
                    continue
                if any(i not in row_set for i in part):  # whole-group micro-batches carry rows left out of the loss
                    cmask = cmask * torch.tensor([i in row_set for i in part], dtype=cmask.dtype,
                                                 device=cmask.device)[:, None]
                # pi_old is the trainer's own model before this step's first update, taken from the
                # first pass (ratio exactly 1 there, whatever engine sampled); later passes reuse it
                if epoch == 0:
                    old, rollout_lp = logp.detach(), self._engine_logprobs(rollout, part, logp)
                    if algo.mu > 1:
                        saved.update({i: (old[j], rollout_lp[j]) for j, i in enumerate(part)})
                    ratio_dev = max(ratio_dev, ((logp.detach() - old).abs() * cmask).max().item())
                    diff = (old - rollout_lp).abs() * cmask
                    means.add("logprob_mismatch_mean", diff.sum().item(), cmask.sum().item())
                    mismatch_max = max(mismatch_max, diff.max().item())
                else:
                    old = torch.stack([saved[i][0] for i in part])
                    rollout_lp = torch.stack([saved[i][1] for i in part])
                mb = MicroBatch(logp=logp, old_logp=old, mask=cmask, entropy=entropy, rollout_logp=rollout_lp,
                                advantages=torch.tensor([rollout.advantages[i] for i in part], device=logp.device),
                                ref_logp=torch.stack([rollout.ref[i][: cmask.shape[1]] for i in part]).to(logp.device)
                                if algo.beta > 0 else None)
                loss, metrics = grpo_objective(mb, self.objective, entropy_coef=rollout.entropy_coef,
                                               num_tokens=num_tokens, num_seqs=num_seqs, generator=picks)
                if not torch.isfinite(loss):
                    raise R1Error(non_finite_loss(loss, logp, old, mb.advantages, mb.ref_logp, cmask))
                self.policy.backward(loss)
                self.policy.accumulate_grads(last=k == len(parts) - 1)
                means.add("loss", loss.item() / algo.mu, 0)  # a sum over micro-batches and passes
                for name, value in metrics.items():
                    means.add(name, value.item())
            grad_norm = self.policy.step()
        self.policy.scheduler.step()
        self.policy.compute_model.eval()
        out = means.reduce(self.dist)  # over every rank's micro-batches
        out.update({
            "grad_norm": grad_norm,
            "clip_frac": out.get("clip_frac", 0.0),
            "kl": out.get("kl", 0.0),
            "entropy": out.get("entropy", float("nan")),
            "loss": out.get("loss", 0.0),
            # |log pi_train - log pi_rollout| on the sampled tokens, before the update
            "logprob_mismatch_mean": out.get("logprob_mismatch_mean", 0.0),
            "logprob_mismatch_max": self.dist.max(mismatch_max),
            # |log ratio| in the first pass: 0 when pi_old is the trainer's own (any engine)
            "ratio_first_pass_max_dev": self.dist.max(ratio_dev),
        })
        if "tis_weight" in out:
            out["tis_weight_mean"] = out.pop("tis_weight")
        return out

    def _engine_logprobs(self, rollout: Rollout, part: list[int], like: torch.Tensor) -> torch.Tensor:
        """[b, Lc] the sampling engine's log-probs of the completions in `part` (zero-padded)."""
        out = torch.zeros_like(like.detach())
        for j, i in enumerate(part):
            lps = rollout.generation.logprobs[i][: like.shape[1]]
            out[j, : len(lps)] = torch.tensor(lps, dtype=out.dtype)
        return out


class _Means:
    """Sums and counts of the step's statistics, reduced over ranks in one collective."""

    NAMES = ("loss", "clip_frac", "kl", "entropy", "tis_weight", "logprob_mismatch_mean")

    def __init__(self):
        self.sums = dict.fromkeys(self.NAMES, 0.0)
        self.counts = dict.fromkeys(self.NAMES, 0.0)

    def add(self, name: str, value: float, count: float = 1.0) -> None:
        self.sums[name] += value
        self.counts[name] += count

    def reduce(self, dist: Any) -> dict[str, float]:
        """Means where something was counted; `loss` is a sum (its count is 0)."""
        totals = dist.sum([self.sums[n] for n in self.NAMES] + [self.counts[n] for n in self.NAMES])
        sums, counts = totals[: len(self.NAMES)], totals[len(self.NAMES):]
        out = {n: s / c for n, s, c in zip(self.NAMES, sums, counts) if c}
        out["loss"] = sums[0]
        return out


def _model_tokens(rollout: Rollout, part: list[int], cmask: torch.Tensor) -> torch.Tensor:
    """The completion mask less the tokens the model did not write (a tool's result inserted
    into a multi-turn episode, `Generation.loss_masks`): they are context, never trained on."""
    masks = rollout.generation.loss_masks
    if masks is None:
        return cmask
    own = torch.zeros_like(cmask)
    for j, i in enumerate(part):
        row = masks[i][: cmask.shape[1]]
        own[j, : len(row)] = torch.tensor(row, dtype=cmask.dtype)
    return cmask * own
