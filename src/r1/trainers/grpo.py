"""The GRPO trainer: one step is six named, timed stages.

    generate -> score -> advantage -> ref_logprobs -> update -> sync

Everything algorithmic (advantages, KL, the clipped loss, aggregation) is a pure
function from `r1.algorithms`; this module only moves tensors between them, and owns
checkpoints, held-out evaluation and the run's artefacts.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import operator
import statistics
import warnings
from pathlib import Path

import torch

from r1.algorithms.advantages import ADVANTAGES, zero_variance_groups
from r1.algorithms.kl import KL_ESTIMATORS
from r1.algorithms.losses import agg_loss, clipped_surrogate, masked_mean
from r1.config import Config, dump_config
from r1.data.prompts import ends_with_eos, is_strict_format, judge_texts
from r1.data.tasks import get_task
from r1.data.tasks.base import curriculum_levels
from r1.errors import R1Error
from r1.eval.heldout import PromptBuilder, evaluate, has_reflection
from r1.models import default_device
from r1.rewards import registry as rewards
from r1.rollout.hf import HFEngine, eos_ids
from r1.tracking import Progress, Tracker, collect_versions
from r1.trainers import checkpoint as ckpt
from r1.trainers.distributed import Dist
from r1.trainers.policy import Policy, completion_logprobs, pad_batch, shared_prefix_logprobs, step_indices
from r1.trainers.steps import Timer, concat_rollouts, non_finite_loss, rollout_rows, seed_everything
from r1.types import Generation, Rollout, SamplingParams


class GRPOTrainer:
    def __init__(self, cfg: Config, out_dir: str | Path, *, resume: bool = False):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.dist = Dist()
        self.resume = self.dist.prepare_run_dir(self.out, resume)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        self.task = get_task(cfg.task.name, cfg.task.params, seed=cfg.seed)
        self.train_set, self.heldout = self.task.splits(cfg.task.train_size, cfg.task.heldout_size)
        if not self.train_set:  # e.g. train_size 0 ("all the rest") with every problem held out
            raise R1Error(f"task {cfg.task.name!r} produced no training problems ({len(self.heldout)} held out by "
                          f"task.heldout_size {cfg.task.heldout_size}; lower it)")
        c = cfg.task.curriculum
        self.levels = curriculum_levels(self.train_set, c.key, c.cumulative) if c else None
        self.device = self.dist.device or default_device()
        self.dist.shard(list(range(cfg.rollout.prompts_per_step)))  # P must split evenly over the ranks
        fsdp = self.dist.fsdp
        self.policy = Policy(cfg.model, cfg.optim, cfg.train.steps, self.device, fsdp=fsdp,
                             grad_reduce=None if fsdp else self.dist.all_reduce_grads, is_main=self.dist.is_main)
        p = self.policy
        self.model, self.tokenizer, self.compute_model = p.model, p.tokenizer, p.compute_model
        self.optimizer, self.scheduler, self.autocast = p.optimizer, p.scheduler, p.autocast
        bf16 = p.bf16
        # A KV cache cannot be kept across activation checkpointing's recomputation.
        self.share_prefix = cfg.train.share_prompt_prefix and not cfg.model.gradient_checkpointing
        # LoRA shares the policy module with the engine (adapters are live); full fine-tuning
        # samples from a bf16 copy refreshed after every update.
        self.engine = self.make_engine(bf16)
        self.ref_model = None
        if cfg.algorithm.beta > 0 and not cfg.model.lora.enabled:
            if fsdp is None:
                self.ref_model = copy.deepcopy(self.compute_model).eval()
            else:  # sharded like the policy
                self.ref_model = self.policy.presharded
                self.policy.shard(self.ref_model, bf16=self.policy.bf16)
                self.ref_model.eval()
            for p in self.ref_model.parameters():
                p.requires_grad_(False)
        self.policy.presharded = None
        self.prompts = PromptBuilder(self.tokenizer, cfg.prompt.style, cfg.prompt.template,
                                     cfg.prompt.force_think, self.task.answer_hint)
        try:
            self.prefill = self.prompts.render("x").prefill
        except ValueError as e:
            raise R1Error(f"prompt: {e}") from None
        self.weights = dict(cfg.rewards)
        self.eos = eos_ids(self.model, self.tokenizer)  # the ids that end a sample (its own stop)

    def make_engine(self, bf16: bool):
        r = self.cfg.rollout
        if r.engine == "hf":
            source = self.model if self.policy.presharded is None else copy.deepcopy(self.policy.presharded)
            return HFEngine(source, self.tokenizer, bf16=bf16 and not self.cfg.model.lora.enabled)
        from r1.models import resolve_path

        if r.engine == "vllm":
            from r1.rollout.vllm import VLLMEngine

            return VLLMEngine(resolve_path(self.cfg.model.name), self.tokenizer, seed=self.cfg.seed,
                              gpu_memory_utilization=r.vllm_gpu_memory_utilization, sleep=r.vllm_sleep,
                              kv_cache_gb=r.vllm_kv_cache_gb, enforce_eager=r.vllm_enforce_eager,
                              dtype="bfloat16" if bf16 else "float32")
        from r1.rollout.vllm import VLLMServerEngine

        if not r.vllm_server_url or not r.vllm_weights_dir:
            raise R1Error("rollout.engine vllm-server needs rollout.vllm_server_url and rollout.vllm_weights_dir")
        return VLLMServerEngine(r.vllm_server_url, resolve_path(self.cfg.model.name), self.tokenizer,
                                weights_dir=r.vllm_weights_dir, push=self.dist.is_main,
                                dtype=torch.bfloat16 if bf16 else None)

    def autocast_ctx(self):
        return self.policy.autocast_ctx()

    # ------------------------------------------------------------------ data
    def curriculum_level(self, step: int) -> int | None:
        """`task.curriculum`: the level of `step`, rising in equal parts of `steps`."""
        if self.levels is None:
            return None
        return min(len(self.levels) - 1, step * len(self.levels) // self.cfg.task.curriculum.steps)

    def step_examples(self, step: int, refill: int = 0):
        """The step's prompts (from the step's curriculum level, if any); refill round k > 0
        draws from an independent seeded stream."""
        seed = self.cfg.seed + 1_000_033 * refill
        pool = range(len(self.train_set)) if self.levels is None else self.levels[self.curriculum_level(step)]
        return [self.train_set[pool[i]] for i in step_indices(len(pool), self.cfg.rollout.prompts_per_step,
                                                               seed, step)]

    # ------------------------------------------------------------------ stages
    def generate(self, step: int, refill: int = 0) -> Rollout:
        """This rank's share of the step's prompts (or of refill round `refill`'s), G samples each."""
        r = self.cfg.rollout
        examples = self.dist.shard(self.step_examples(step, refill))
        prompt_ids = [self.prompts.ids(ex.question) for ex in examples]
        params = SamplingParams(max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p,
                                stop=tuple(r.stop), stop_grace=r.stop_grace_tokens,
                                seed=self.cfg.seed * 7919 + step + 104_729 * refill,
                                row_offset=self.dist.rank * len(examples) * r.group_size,
                                total_rows=r.prompts_per_step * r.group_size)
        self.model.eval()
        with self.autocast_ctx() if getattr(self.engine, "model", None) is self.model else contextlib.nullcontext():
            gen: Generation = self.engine.generate(prompt_ids, r.group_size, params)
        judged, ran_on = self.judged_texts(gen)
        return Rollout(examples=examples, prompt_ids=prompt_ids, group_size=r.group_size,
                       generation=gen, completions=judged, ran_on=ran_on)

    def judged_texts(self, gen: Generation) -> tuple[list[str], list[bool]]:
        """What the rewards judge, and which samples ran on (`data.prompts.judge_texts`)."""
        return judge_texts(gen.texts, gen.completion_ids, stops=self.cfg.rollout.stop, eos=self.eos,
                           grace=self.cfg.rollout.stop_grace_tokens, prefill=self.prefill)

    def score(self, rollout: Rollout) -> rewards.Failures:
        g = rollout.group_size
        examples = [ex for ex in rollout.examples for _ in range(g)]
        per, total, failures = rewards.score(
            rollout.completions, examples, self.task, self.weights, self.cfg.reward_params,
            lengths=[len(c) for c in rollout.generation.completion_ids], max_tokens=self.cfg.rollout.max_new_tokens,
            ran_on=rollout.ran_on or None)
        rollout.rewards = per
        if self.cfg.algorithm.unscored == "exclude":
            total, rollout.scored = rewards.combine(per, self.weights, rollout.group_size)
        else:
            rollout.scored = [True] * rollout.size
        rollout.total_reward = total
        return failures

    def advantage(self, rollout: Rollout) -> torch.Tensor:
        rewards_t = torch.tensor(rollout.total_reward, dtype=torch.float32)
        adv = ADVANTAGES[self.cfg.algorithm.advantage](rewards_t, rollout.group_size)
        if not torch.isfinite(adv).all():  # the registry only passes finite rewards: a bug if it happens
            i = int((~torch.isfinite(adv)).nonzero()[0])
            raise R1Error(f"advantage {self.cfg.algorithm.advantage!r} gave {adv[i].item()} for sample {i} "
                          f"(rewards {({k: v[i] for k, v in rollout.rewards.items()})}); nothing was applied")
        g = rollout.group_size
        scored = torch.tensor(rollout.scored or [True] * rollout.size)
        flat = zero_variance_groups(rewards_t, g)
        for k in (~scored).view(-1, g).any(1).nonzero().flatten().tolist():  # groups with unscored samples
            idx = scored[k * g : (k + 1) * g].nonzero().flatten() + k * g
            adv[k * g : (k + 1) * g] = 0.0
            if len(idx) > 1:
                adv[idx] = ADVANTAGES[self.cfg.algorithm.advantage](rewards_t[idx], len(idx))
            flat[k] = len(idx) < 2 or bool(zero_variance_groups(rewards_t[idx], len(idx))[0])
        rollout.advantages = adv.tolist()
        keep = scored.clone()
        if self.cfg.algorithm.skip_zero_variance:
            keep &= ~flat.repeat_interleave(g)
        return keep

    def refill(self, step: int, rollout: Rollout, keep: torch.Tensor,
               failures: rewards.Failures) -> tuple[Rollout, torch.Tensor, rewards.Failures, int]:
        """DAPO's dynamic sampling: while fewer of this rank's groups have unequal rewards than
        it has prompts, sample refill rounds of prompts (at most `max_refill_prompts` extra);
        then train on exactly that many varied groups (the first ones), if there are enough.
        Everything sampled stays in the rollout for the metrics. Returns the refill rounds."""
        a, g = self.cfg.algorithm, rollout.group_size
        want, rounds = len(rollout.examples), 0

        def varied(k: torch.Tensor) -> torch.Tensor:
            return k.view(-1, g).any(1)

        while (a.dynamic_sampling and int(varied(keep).sum()) < want
               and (rounds + 1) * want <= a.max_refill_prompts):
            rounds += 1
            more = self.generate(step, refill=rounds)
            failures = failures + self.score(more)
            keep = torch.cat([keep, self.advantage(more)])
            rollout = concat_rollouts([rollout, more])
        if a.dynamic_sampling:
            groups = varied(keep)
            extra = groups.cumsum(0) > want  # varied groups beyond the step's size
            keep = keep & ~extra.repeat_interleave(g)
        return rollout, keep, failures, rounds

    def _rows(self, rollout: Rollout, keep: torch.Tensor) -> list[int]:
        """The rows that enter the loss: kept groups, less truncated completions if masked."""
        cut = rollout.generation.finish_reasons if self.cfg.algorithm.mask_truncated else ["stop"] * rollout.size
        return [i for i in range(rollout.size) if keep[i] and cut[i] != "length"]

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
        g, pad, temp = rollout.group_size, self.tokenizer.pad_token_id, self.cfg.rollout.temperature
        completions = [rollout.generation.completion_ids[i] for i in part]
        if self.share_prefix:
            prompts = [rollout.prompt_ids[i // g] for i in part[::g]]
            return shared_prefix_logprobs(model, prompts, completions, g, pad, temp, with_entropy, self.device)
        ids, attn, cmask = pad_batch([rollout.prompt_ids[i // g] for i in part], completions, pad)
        ids, attn, cmask = ids.to(self.device), attn.to(self.device), cmask.to(self.device)
        logp, entropy = completion_logprobs(model, ids, attn, cmask.shape[1], temp, with_entropy)
        return logp, entropy, cmask

    @torch.no_grad()
    def ref_logprobs(self, rollout: Rollout, rows: list[int]) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        if self.cfg.algorithm.beta <= 0:
            return out
        ctx = self.model.disable_adapter() if self.ref_model is None else contextlib.nullcontext()
        model = self.model if self.ref_model is None else self.ref_model
        with ctx, self.autocast_ctx():
            for part, real in self._lockstep(rollout, rows):
                lp, _, _ = self._logprobs(model, rollout, part)
                if real:
                    for j, i in enumerate(part):
                        out[i] = lp[j]
        return out

    def update(self, rollout: Rollout, rows: list[int], ref: dict[int, torch.Tensor]) -> dict[str, float]:
        """One optimizer step (μ of them) on this rank's rows, normalised by the whole step's
        token and sequence counts; `Policy.step` sums the gradients over ranks."""
        a, cfg = self.cfg.algorithm, self.cfg
        gen = rollout.generation
        num_tokens, num_seqs = self.dist.sum([float(sum(len(gen.completion_ids[i]) for i in rows)), float(len(rows))])
        self.stepped = num_seqs > 0
        if not num_seqs:  # every group was uniform: no gradient, but the schedule still advances
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                self.scheduler.step()
            return {"grad_norm": 0.0, "clip_frac": 0.0, "kl": 0.0, "entropy": float("nan"), "loss": 0.0}
        stats = {"clip": [], "kl": [], "entropy": [], "loss": 0.0, "mismatch": [], "mismatch_max": 0.0, "tis": [],
                 "ratio_dev": 0.0}
        grad_norm = 0.0
        tis = a.rollout_correction == "tis" or (a.rollout_correction == "auto" and cfg.rollout.engine != "hf")
        # per row, for passes after the first: (pi_old = the trainer's log-probs before the first
        # update, the sampling engine's log-probs), both [Lc]
        saved: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        row_set = set(rows)
        self.compute_model.train()
        for epoch in range(a.mu):
            self.optimizer.zero_grad(set_to_none=True)
            for part, real in self._lockstep(rollout, rows):
                with self.autocast_ctx():
                    logp, entropy, cmask = self._logprobs(self.compute_model, rollout, part, with_entropy=True)
                if not real:  # keeps a sharded model's collectives in step; contributes nothing
                    self.policy.backward(logp.sum() * 0.0)
                    continue
                lc = cmask.shape[1]
                if any(i not in row_set for i in part):  # whole-group micro-batches carry rows left out of the loss
                    cmask = cmask * torch.tensor([i in row_set for i in part], dtype=cmask.dtype,
                                                 device=cmask.device)[:, None]
                # pi_old is the trainer's own model before this step's first update, taken from the
                # first pass (ratio exactly 1 there, whatever engine sampled); later passes reuse it
                if epoch == 0:
                    old = logp.detach()
                    rollout_lp = torch.zeros_like(old)  # the sampling engine's, against the trainer's
                    for j, i in enumerate(part):
                        lps = gen.logprobs[i][:lc]
                        rollout_lp[j, : len(lps)] = torch.tensor(lps, dtype=old.dtype)
                    if a.mu > 1:
                        saved.update({i: (old[j], rollout_lp[j]) for j, i in enumerate(part)})
                    stats["ratio_dev"] = max(stats["ratio_dev"], ((logp.detach() - old).abs() * cmask).max().item())
                    diff = (old - rollout_lp).abs() * cmask
                    stats["mismatch"].append((diff.sum().item(), cmask.sum().item()))
                    stats["mismatch_max"] = max(stats["mismatch_max"], diff.max().item())
                else:
                    old = torch.stack([saved[i][0] for i in part])
                    rollout_lp = torch.stack([saved[i][1] for i in part])
                adv = torch.tensor([rollout.advantages[i] for i in part], device=logp.device)
                loss_tok, clipped = clipped_surrogate(logp, old, adv, a.clip_low, a.clip_high)
                if tis:  # truncated importance sampling: the samples came from the engine, not pi_old
                    weight = (old - rollout_lp).exp().clamp(max=a.tis_cap) * cmask
                    loss_tok = loss_tok * weight
                    stats["tis"].append(masked_mean(weight, cmask).item())
                if a.beta > 0:
                    ref_lp = torch.stack([ref[i][:lc] for i in part]).to(logp.device)
                    kl = KL_ESTIMATORS[a.kl_estimator](logp, ref_lp)
                    loss_tok = loss_tok + a.beta * kl
                    stats["kl"].append(masked_mean(kl.detach(), cmask).item())
                loss = agg_loss(loss_tok, cmask, a.loss_agg, num_tokens=num_tokens,
                                num_seqs=num_seqs, max_len=float(cfg.rollout.max_new_tokens))
                if not torch.isfinite(loss):
                    raise R1Error(non_finite_loss(loss, logp, old, adv, ref_lp if a.beta > 0 else None, cmask))
                self.policy.backward(loss)
                self.policy.accumulate_grads()
                stats["loss"] += loss.item() / a.mu
                stats["clip"].append(masked_mean(clipped.float(), cmask).item())
                stats["entropy"].append(masked_mean(entropy, cmask).item())
            grad_norm = self.policy.step()
        self.scheduler.step()
        self.compute_model.eval()
        # means over every rank's micro-batches; the loss terms add up to the step's loss
        totals = self.dist.sum([sum(stats["clip"]), len(stats["clip"]), sum(stats["kl"]), len(stats["kl"]),
                                sum(stats["entropy"]), len(stats["entropy"]), stats["loss"],
                                sum(d for d, _ in stats["mismatch"]), sum(n for _, n in stats["mismatch"]),
                                sum(stats["tis"]), len(stats["tis"])])
        clip_s, clip_n, kl_s, kl_n, ent_s, ent_n, loss, mm_s, mm_n, tis_s, tis_n = totals
        out = {
            "grad_norm": grad_norm,
            "clip_frac": clip_s / clip_n if clip_n else 0.0,
            "kl": kl_s / kl_n if kl_n else 0.0,
            "entropy": ent_s / ent_n if ent_n else float("nan"),
            "loss": loss,
            # |log pi_train - log pi_rollout| on the sampled tokens, before the update
            "logprob_mismatch_mean": mm_s / mm_n if mm_n else 0.0,
            "logprob_mismatch_max": self.dist.max(stats["mismatch_max"]),
            # |log ratio| in the first pass: 0 when pi_old is the trainer's own (any engine)
            "ratio_first_pass_max_dev": self.dist.max(stats["ratio_dev"]),
        }
        if tis_n:
            out["tis_weight_mean"] = tis_s / tis_n
        return out

    def sync(self) -> None:
        self.policy.refresh_compute_weights()
        self.engine.sync_weights(self.policy.weights_for_sampling())

    # ------------------------------------------------------------------ evaluation
    def evaluate_heldout(self, tag: str) -> dict:
        e, r = self.cfg.eval, self.cfg.rollout
        with self.autocast_ctx() if getattr(self.engine, "model", None) is self.model else contextlib.nullcontext():
            result = evaluate(self.engine, self.prompts, self.task, self.heldout, samples=e.samples,
                              temperature=e.temperature, top_p=e.top_p,
                              max_new_tokens=e.max_new_tokens or r.max_new_tokens, stop=tuple(r.stop),
                              stop_grace=r.stop_grace_tokens, seed=self.cfg.seed + 12345,
                              batch_size=e.batch_size)
        rows = result.pop("rows")
        (self.out / "eval").mkdir(exist_ok=True)
        with open(self.out / "eval" / f"heldout_{tag}.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        return result

    # ------------------------------------------------------------------ the loop
    def step_metrics(self, step: int, rollout: Rollout, keep, upd: dict, timer: Timer,
                     failures: rewards.Failures) -> dict:
        gen = rollout.generation
        lengths = [len(c) for c in gen.completion_ids]
        n = rollout.size
        gen_tokens = sum(lengths)
        row = {
            "step": step + 1,
            "reward": statistics.fmean(rollout.total_reward),
            "reward_std": statistics.pstdev(rollout.total_reward),
        }
        for name, values in rollout.rewards.items():
            known = [v for v in values if v is not None]
            row[f"rewards/{name}"] = statistics.fmean(known) if known else 0.0
        # the accuracy reward already verified every completion; verify again only without it
        acc = rollout.rewards.get("accuracy") or self.task.score_batch(
            rollout.completions, [e for e in rollout.examples for _ in range(rollout.group_size)])
        acc = [a or 0.0 for a in acc]
        row.update({
            "accuracy": sum(acc) / n,
            "format_rate": sum(is_strict_format(c) and not r
                               for c, r in zip(rollout.completions, rollout.ran_on or [False] * n)) / n,
            "ran_on": sum(rollout.ran_on) / n if rollout.ran_on else 0.0,
            "reflection_rate": sum(has_reflection(c) for c in rollout.completions) / n,
            "response_length_mean": statistics.fmean(lengths),
            "response_length_max": max(lengths),
            "truncated_frac": sum(f == "length" for f in gen.finish_reasons) / n,
            "eos_rate": sum(ends_with_eos(c, self.eos) for c in gen.completion_ids) / n,
            **({} if self.levels is None else {"curriculum_level": self.curriculum_level(step)}),
            "zero_variance_groups": int((~keep).view(-1, rollout.group_size).all(1).sum().item()),
            "unscored": sum(not s for s in rollout.scored) if rollout.scored else 0,
            **failures.metrics(),
            "lr": self.scheduler.get_last_lr()[0],
            **upd,
        })
        for name, seconds in timer.times.items():
            row[f"time/{name}"] = seconds
        row["time/step"] = sum(timer.times.values())
        row["tokens_per_s"] = gen_tokens / max(timer.times.get("generate", 1e-9), 1e-9)
        return row

    def gathered(self, rollout: Rollout, keep: torch.Tensor,
                 failures: rewards.Failures) -> tuple[Rollout, torch.Tensor, rewards.Failures]:
        """The whole step's rollout (every rank's rows, in rank order) for metrics and logs;
        on one process, the rollout itself. Only rank 0 needs it (others get theirs back)."""
        if not self.dist.enabled:
            return rollout, keep, failures
        parts = self.dist.gather((rollout, keep.tolist(), failures))
        if not self.dist.is_main:
            return rollout, keep, failures
        return (concat_rollouts([p[0] for p in parts]), torch.tensor([k for p in parts for k in p[1]], dtype=torch.bool),
                functools.reduce(operator.add, (p[2] for p in parts)))

    def train(self) -> dict:
        """The loop. With several processes every rank runs it; rank 0 alone evaluates,
        logs, checkpoints and writes the model and report (the others wait at barriers)."""
        cfg, main = self.cfg, self.dist.is_main
        self.setup()
        if main:
            dump_config(cfg, self.out / "config.yaml")
            (self.out / "versions.json").write_text(json.dumps(
                {**collect_versions(), "processes": self.dist.world}, indent=1))
        start, state = 0, {}
        latest = ckpt.latest_checkpoint(self.ckpt_dir) if self.resume else None
        if latest is not None:
            state = ckpt.load_checkpoint(latest, self.model, self.optimizer, self.scheduler,
                                         load_states=self.policy.load_checkpoint_states)
            start = state["step"]
            self.sync()
        history: list[dict] = state.get("heldout", [])
        progress = Progress(cfg.train.steps, start, enabled=cfg.tracking.progress and main)
        if latest is not None:
            progress.print(f"resumed from {latest} (step {start})")
        tracker = Tracker(self.out, cfg.tracking, config=cfg.model_dump(mode="json"),
                          resume_step=start if latest is not None else None) if main else None
        try:
            if not history:
                if main:
                    progress.print(f"held-out evaluation before training ({len(self.heldout)} problems)...")
                    before = self.evaluate_heldout("before")
                    history.append({"step": 0, **before})
                    progress.print(f"before: accuracy {before['accuracy']:.3f}, format {before['format_rate']:.3f}")
                self.dist.barrier()
            flat: list[Rollout] | None = [] if start == 0 and cfg.train.diagnose_after else None
            for step in range(start, cfg.train.steps):
                timer = Timer()
                with timer.stage("generate"):
                    rollout = self.generate(step)
                with timer.stage("score"):
                    failures = self.score(rollout)
                with timer.stage("advantage"):
                    keep = self.advantage(rollout)
                with timer.stage("refill"):
                    rollout, keep, failures, refills = self.refill(step, rollout, keep, failures)
                    rows = self._rows(rollout, keep)
                with timer.stage("ref_logprobs"):
                    ref = self.ref_logprobs(rollout, rows)
                with timer.stage("update"):
                    upd = self.update(rollout, rows, ref)
                with timer.stage("sync"):
                    if self.stepped:
                        self.sync()
                whole, whole_keep, whole_failures = self.gathered(rollout, keep, failures)
                done = step + 1
                if main:
                    row = self.step_metrics(step, whole, whole_keep, upd, timer, whole_failures)
                    row["refill_rounds"] = refills
                    row["groups_trained"] = int(whole_keep.view(-1, whole.group_size).any(1).sum())
                    flat = self.watch_signal(flat, whole, progress)
                    if cfg.train.eval_every and done % cfg.train.eval_every == 0 and done < cfg.train.steps:
                        mid = self.evaluate_heldout(f"step{done:06d}")
                        history.append({"step": done, **mid})
                        row["heldout/accuracy"], row["heldout/format_rate"] = mid["accuracy"], mid["format_rate"]
                    tracker.log(row)
                    tracker.log_rollouts(rollout_rows(done, whole, self.cfg.rollout.stop))
                    progress.update(1, f"reward {row['reward']:.3f} acc {row['accuracy']:.2f} "
                                       f"fmt {row['format_rate']:.2f} len {row['response_length_mean']:.0f}")
                if done % cfg.train.save_every == 0 or done == cfg.train.steps:
                    model_state, optim_state = self.policy.checkpoint_states()  # FSDP: a collective
                    if main:
                        ckpt.save_checkpoint(self.ckpt_dir, done, self.model, self.optimizer, self.scheduler,
                                             {"heldout": history}, keep=cfg.train.keep_checkpoints,
                                             model_state=model_state, optim_state=optim_state)
                self.dist.barrier()
            if main and history[-1]["step"] != cfg.train.steps:
                progress.print("held-out evaluation after training...")
                after = self.evaluate_heldout("after")
                history.append({"step": cfg.train.steps, **after})
        finally:
            progress.close()
            if tracker is not None:
                tracker.close()
        summary: dict = {}
        self.save_model()  # every rank: a sharded model is gathered first; rank 0 writes
        if main:
            from r1.report import write_run_report

            summary = write_run_report(self.out, cfg, history)
        self.dist.barrier()
        return summary

    def watch_signal(self, flat: list[Rollout] | None, rollout: Rollout, progress) -> list[Rollout] | None:
        """Collect the first steps' rollouts while no group has unequal rewards; after
        `train.diagnose_after` of them, say why (and stop watching). None: not watching."""
        if flat is None:
            return None
        if not bool(zero_variance_groups(torch.tensor(rollout.total_reward), rollout.group_size).all()):
            return None  # there is a signal
        flat.append(rollout)
        if len(flat) < self.cfg.train.diagnose_after:
            return flat
        from r1.trainers.diagnose import diagnose, render

        text = render(diagnose(flat, self.task, self.cfg), len(flat))
        (self.out / "diagnosis.md").write_text(text + "\n")
        progress.print(text)
        return None

    def save_model(self) -> None:
        """The policy, with the generation settings it is evaluated with (so that transformers,
        vLLM and other tools sample it as r1 does, and stop at every id that ends it)."""
        e, r = self.cfg.eval, self.cfg.rollout
        self.policy.save(self.out / "model", generation={
            "eos_token_id": sorted(self.eos), "do_sample": e.temperature > 0,
            "temperature": e.temperature, "top_p": e.top_p, "max_new_tokens": e.max_new_tokens or r.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id})
