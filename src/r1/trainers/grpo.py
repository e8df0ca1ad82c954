"""The GRPO trainer: one step is six named, timed stages.

    generate -> score -> advantage -> ref_logprobs -> update -> sync

Everything algorithmic (advantages, KL, the clipped loss, aggregation) is a pure
function from `r1.algorithms`; this module only moves tensors between them, and owns
checkpoints, held-out evaluation and the run's artefacts.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import warnings

import torch

from r1.algorithms.advantages import ADVANTAGES, zero_variance_groups
from r1.algorithms.entropy import EntropyControl, adapt_coef, adapt_temperature
from r1.config import Config
from r1.data.prompts import PromptFormat, judge_texts
from r1.data.tasks import build_task
from r1.data.tasks.base import curriculum_levels
from r1.errors import R1Error
from r1.eval.heldout import evaluate
from r1.models import default_device
from r1.rewards import registry as rewards
from r1.rollout.episodes import with_tools
from r1.rollout.hf import HFEngine, eos_ids
from r1.trainers import checkpoint as ckpt
from r1.trainers.base import Trainer
from r1.trainers.policy import Policy, step_indices
from r1.trainers.steps import Timer, concat_rollouts, rollout_rows, seed_everything, step_metrics
from r1.trainers.update import PolicyUpdate
from r1.trainers.watch import watch_entropy, watch_signal
from r1.types import Generation, Rollout, SamplingParams


class GRPOTrainer(Trainer):
    cfg: Config

    def __init__(self, cfg: Config, out_dir, *, resume: bool = False):
        rewards.check_rewards(cfg.rewards, cfg.reward_params)  # before the run folder is touched
        super().__init__(cfg, out_dir, resume=resume)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        self.task = build_task(cfg)
        self.train_set, self.heldout = self.task.splits(cfg.task.train_size, cfg.task.heldout_size)
        if not self.train_set:  # e.g. train_size 0 ("all the rest") with every problem held out
            raise R1Error(f"task {cfg.task.name!r} produced no training problems ({len(self.heldout)} held out by "
                          f"task.heldout_size {cfg.task.heldout_size}; lower it)")
        curriculum = cfg.task.curriculum
        self.levels = curriculum_levels(self.train_set, curriculum.key, curriculum.cumulative) if curriculum else None
        self.device = self.dist.device or default_device()
        self.dist.shard(list(range(cfg.rollout.prompts_per_step)))  # P must split evenly over the ranks
        fsdp = self.dist.fsdp
        self.policy = Policy(cfg.model, cfg.optim, cfg.train.steps, self.device, fsdp=fsdp,
                             grad_reduce=self.dist.grad_reduce, is_main=self.dist.is_main)
        p = self.policy
        self.model, self.tokenizer, self.compute_model = p.model, p.tokenizer, p.compute_model
        self.optimizer, self.scheduler, self.autocast = p.optimizer, p.scheduler, p.autocast
        bf16 = p.bf16
        # A KV cache cannot be kept across activation checkpointing's recomputation.
        self.share_prefix = cfg.train.share_prompt_prefix and not cfg.model.checkpointing
        # the engine (LoRA: the live policy; else a copy synced after every update), and with
        # `tools:` every sample a multi-turn episode over it
        self.engine = with_tools(self.make_engine(bf16), self.tokenizer, cfg.tools)
        self.ref_model = None
        if cfg.algorithm.beta > 0 and not cfg.model.lora.enabled:
            if fsdp is None:
                self.ref_model = copy.deepcopy(self.compute_model).eval()
            else:  # sharded like the policy
                self.ref_model = self.policy.presharded
                self.policy.shard(self.ref_model, bf16=self.policy.bf16)
                self.ref_model.eval()
            for param in self.ref_model.parameters():
                param.requires_grad_(False)
        self.ref_pages = self.page_reference(fsdp) if self.ref_model is not None else None
        self.policy.presharded = None
        self.prompt = PromptFormat.of(cfg, self.task.answer_hint, self.tokenizer)
        try:
            self.prompt.render("x", self.tokenizer)
        except ValueError as e:
            raise R1Error(f"prompt: {e}") from None
        self.weights = dict(cfg.rewards)
        self.control = EntropyControl(coef=cfg.entropy.coef, temperature=cfg.rollout.temperature)
        self.eos = eos_ids(self.model, self.tokenizer)  # the ids that end a sample (its own stop)
        self.updater = PolicyUpdate(cfg, self.policy, self.dist, self.ref_model, share_prefix=self.share_prefix,
                                    device=self.device, pad_id=self.tokenizer.pad_token_id)

    def page_reference(self, fsdp):
        """`model.reference_on_disk` (or `low_memory`): the reference's weights in an unlinked
        file, resident only during its pass (`allocator.FilePagedWeights`). On the CPU, without
        FSDP (which shards the reference already); asked for by name elsewhere, an error."""
        model_cfg = self.cfg.model
        if not model_cfg.paged_reference:
            return None
        where = "with FSDP (the reference is sharded over the ranks already)" if fsdp is not None else \
            "off the CPU (it pages host memory)" if torch.device(self.device).type != "cpu" else None
        if where:
            if model_cfg.reference_on_disk:
                raise R1Error(f"model.reference_on_disk is not supported {where}")
            return None  # low_memory: the rest of it still applies
        from r1.allocator import FilePagedWeights, memory_filesystem

        kind = memory_filesystem(self.out)
        if kind:
            warnings.warn(f"the reference on disk (model.reference_on_disk or low_memory): {self.out} is on a "
                          f"{kind} (memory), so its weights stay in memory there; give --out a folder on a "
                          "disk to save that memory", stacklevel=2)
        try:
            pages = FilePagedWeights(self.ref_model, self.out)
        except OSError as e:
            raise R1Error(f"model.reference_on_disk: cannot write the reference weights into {self.out}: "
                          f"{e.strerror or e}") from None
        pages.drop()
        return pages

    def make_engine(self, bf16: bool):
        rollout_cfg, p = self.cfg.rollout, self.policy
        if rollout_cfg.engine == "hf":
            if p.compute_model is not p.model and p.presharded is None:
                # precision bf16: sample with the bf16 compute copy's own weights (kept current
                # by the policy after every step), not a third copy of the model
                return HFEngine(p.compute_model, self.tokenizer, share_weights=True)
            source = self.model if p.presharded is None else copy.deepcopy(p.presharded)
            return HFEngine(source, self.tokenizer, bf16=bf16 and not self.cfg.model.lora.enabled)
        from r1.models import resolve_path

        if rollout_cfg.engine == "vllm":
            from r1.rollout.vllm import VLLMEngine

            return VLLMEngine(resolve_path(self.cfg.model.name), self.tokenizer, policy=p.presharded or self.model,
                              seed=self.cfg.seed, gpu_memory_utilization=rollout_cfg.gpu_memory_utilization,
                              sleep=rollout_cfg.vllm_sleep, kv_cache_gb=rollout_cfg.kv_cache_gb,
                              enforce_eager=rollout_cfg.enforce_eager, dtype="bfloat16" if bf16 else "float32")
        from r1.rollout.vllm import VLLMServerEngine

        if not rollout_cfg.vllm_server_url or not rollout_cfg.vllm_weights_dir:
            raise R1Error("rollout.engine vllm-server needs rollout.vllm_server_url and rollout.vllm_weights_dir")
        return VLLMServerEngine(rollout_cfg.vllm_server_url, resolve_path(self.cfg.model.name), self.tokenizer,
                                weights_dir=rollout_cfg.vllm_weights_dir, push=self.dist.is_main,
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
        rollout_cfg = self.cfg.rollout
        examples = self.dist.shard(self.step_examples(step, refill))
        prompt_ids = [self.prompt.ids(ex.question, self.tokenizer) for ex in examples]
        temperature = self.control.temperature  # rollout.temperature, or where entropy control moved it
        params = SamplingParams(max_new_tokens=rollout_cfg.max_new_tokens, temperature=temperature,
                                top_p=rollout_cfg.top_p,
                                stop=tuple(rollout_cfg.stop), stop_grace=rollout_cfg.stop_grace_tokens,
                                seed=self.cfg.seed * 7919 + step + 104_729 * refill,
                                row_offset=self.dist.rank * len(examples) * rollout_cfg.group_size,
                                total_rows=rollout_cfg.prompts_per_step * rollout_cfg.group_size)
        self.model.eval()
        with self.autocast_ctx() if getattr(self.engine, "model", None) is self.model else contextlib.nullcontext():
            gen: Generation = self.engine.generate(prompt_ids, rollout_cfg.group_size, params)
        judged, ran_on = self.judged_texts(gen)
        return Rollout(examples=examples, prompt_ids=prompt_ids, group_size=rollout_cfg.group_size,
                       generation=gen, completions=judged, ran_on=ran_on, step=step, temperature=temperature,
                       entropy_coef=self.control.coef)

    def judged_texts(self, gen: Generation) -> tuple[list[str], list[bool]]:
        """What the rewards judge, and which samples ran on (`data.prompts.judge_texts`)."""
        return judge_texts(gen.texts, gen.completion_ids, stops=self.cfg.rollout.stop, eos=self.eos,
                           grace=self.cfg.rollout.stop_grace_tokens, prefill=self.prompt.prefill)

    def score(self, rollout: Rollout) -> None:
        """`rollout.rewards` per reward, their weighted `total_reward`, which samples were
        `scored`, and the reward `failures`."""
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
        rollout.total_reward, rollout.failures = total, failures

    def advantage(self, rollout: Rollout) -> None:
        """`rollout.advantages`, and `rollout.keep`: the rows of groups that train (scored,
        and with unequal rewards unless `skip_zero_variance` is off)."""
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
        rollout.keep = keep.tolist()

    def refill(self, step: int, rollout: Rollout) -> Rollout:
        """DAPO's dynamic sampling: while fewer of this rank's groups have unequal rewards than
        it has prompts, sample refill rounds of prompts (at most `max_refill_prompts` extra);
        then train on exactly that many varied groups (the first ones), if there are enough.
        Everything sampled stays in the rollout for the metrics (`refill_rounds`)."""
        algo, g = self.cfg.algorithm, rollout.group_size
        want, rounds = len(rollout.examples), 0

        def varied(ro: Rollout) -> torch.Tensor:
            return torch.tensor(ro.keep, dtype=torch.bool).view(-1, g).any(1)

        while (algo.dynamic_sampling and int(varied(rollout).sum()) < want
               and (rounds + 1) * want <= algo.max_refill_prompts):
            rounds += 1
            more = self.generate(step, refill=rounds)
            self.score(more)
            self.advantage(more)
            rollout = concat_rollouts([rollout, more])
        if algo.dynamic_sampling:
            extra = varied(rollout).cumsum(0) > want  # varied groups beyond the step's size
            rollout.keep = [k and not x for k, x in zip(rollout.keep, extra.repeat_interleave(g).tolist())]
        rollout.refill_rounds = rounds
        return rollout

    def select_rows(self, rollout: Rollout) -> None:
        """`rollout.rows`, those that enter the loss: kept groups, less truncated completions
        when `mask_truncated`."""
        cut = rollout.generation.finish_reasons if self.cfg.algorithm.mask_truncated else ["stop"] * rollout.size
        rollout.rows = [i for i in range(rollout.size) if rollout.keep[i] and cut[i] != "length"]

    def control_entropy(self, rollout: Rollout) -> None:
        """`entropy.control`: move the bonus's coefficient or the sampling temperature of the
        next step by this step's measured entropy (the same on every rank: it is reduced)."""
        ent, h = self.cfg.entropy, rollout.update.get("entropy", float("nan"))
        if ent.control == "bonus":
            self.control.coef = adapt_coef(self.control.coef, h, ent.target, ent.coef_delta, 0.0, ent.coef_max)
        elif ent.control == "temperature":
            self.control.temperature = adapt_temperature(self.control.temperature, h, ent.target,
                                                         ent.temperature_gain, ent.temperature_min,
                                                         ent.temperature_max)

    def sync(self) -> None:
        self.policy.refresh_compute_weights()
        self.engine.sync_weights(self.policy.weights_for_sampling())

    after_resume = sync

    # ------------------------------------------------------------------ evaluation
    def evaluate_heldout(self, tag: str) -> dict:
        heldout, rollout = self.cfg.eval, self.cfg.rollout
        with self.autocast_ctx() if getattr(self.engine, "model", None) is self.model else contextlib.nullcontext():
            result = evaluate(self.engine, self.prompt, self.tokenizer, self.task, self.heldout,
                              samples=heldout.samples, temperature=heldout.temperature, top_p=heldout.top_p,
                              max_new_tokens=heldout.max_new_tokens or rollout.max_new_tokens,
                              stop=tuple(rollout.stop), stop_grace=rollout.stop_grace_tokens,
                              seed=self.cfg.seed + 12345, batch_size=heldout.batch_size)
        rows = result.pop("rows")
        (self.out / "eval").mkdir(exist_ok=True)
        with open(self.out / "eval" / f"heldout_{tag}.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        return result

    # ------------------------------------------------------------------ the loop
    def step(self, step: int) -> Rollout:
        """One GRPO step on this rank: every stage fills in the rollout, timed."""
        timer = Timer()
        with timer.stage("generate"):
            rollout = self.generate(step)
        with timer.stage("score"):
            self.score(rollout)
        with timer.stage("advantage"):
            self.advantage(rollout)
        with timer.stage("refill"):
            rollout = self.refill(step, rollout)
            self.select_rows(rollout)
        if hasattr(self.engine, "release"):  # sampling's own memory, free for the update
            self.engine.release()
        with timer.stage("ref_logprobs"):
            self.updater.ref_logprobs(rollout)
            if self.ref_pages is not None:  # out of the resident set until the next step's pass
                self.ref_pages.drop()
        with timer.stage("update"):
            self.updater.update(rollout)
            self.control_entropy(rollout)
        with timer.stage("sync"):
            if rollout.stepped:
                self.sync()
        rollout.timings = timer.times
        return rollout

    def gathered(self, rollout: Rollout) -> Rollout:
        """The whole step's rollout (every rank's rows, in rank order) for metrics and logs;
        on one process, the rollout itself. Only rank 0 needs it (others get theirs back)."""
        if not self.dist.enabled:
            return rollout
        parts = self.dist.gather(dataclasses.replace(rollout, ref={}))  # the reference log-probs stay here
        return concat_rollouts(parts) if self.dist.is_main else rollout

    def train(self) -> dict:
        """The loop. With several processes every rank runs it; rank 0 alone evaluates,
        logs, checkpoints and writes the model and report (the others wait at barriers)."""
        cfg, main = self.cfg, self.dist.is_main
        self.setup()
        start, state, progress, tracker = self.start_run(cfg.train.steps)
        history: list[dict] = list(state.get("heldout", []))
        if "entropy_control" in state:  # where the controllers had moved the coefficient and temperature
            self.control = EntropyControl(**state["entropy_control"])
        entropies: list[float | None] | None = [] if start == 0 else None  # for the collapse warning
        try:
            if not history:
                if main:
                    progress.print(f"held-out evaluation before training ({len(self.heldout)} problems)...")
                    before = self.evaluate_heldout("before")
                    history.append({"step": 0, **before})
                    progress.print(f"before: pass@1 {before['pass@1']:.3f}, format {before['format_rate']:.3f}")
                self.dist.barrier()
            flat: list[Rollout] | None = [] if start == 0 and cfg.train.diagnose_after else None
            for step in range(start, cfg.train.steps):
                whole, done = self.gathered(self.step(step)), step + 1
                if main:
                    row = step_metrics(done, whole, self.task, self.eos, self.scheduler.get_last_lr()[0],
                                       self.curriculum_level(step))
                    flat = watch_signal(flat, whole, self.task, cfg, self.out, progress)
                    entropies = watch_entropy(entropies, row, cfg, progress)
                    if cfg.train.eval_every and done % cfg.train.eval_every == 0 and done < cfg.train.steps:
                        mid = self.evaluate_heldout(f"step{done:06d}")
                        history.append({"step": done, **mid})
                        row["heldout/pass@1"], row["heldout/format_rate"] = mid["pass@1"], mid["format_rate"]
                    tracker.log(row)
                    tracker.log_rollouts(rollout_rows(done, whole, self.cfg.rollout.stop))
                    progress.update(1, f"reward {row['reward']:.3f} acc {row['accuracy']:.2f} "
                                       f"fmt {row['format_rate']:.2f} len {row['response_length_mean']:.0f}")
                if done % cfg.train.save_every == 0 or done == cfg.train.steps:
                    model_state, optim_state = self.policy.checkpoint_states()  # FSDP: a collective
                    if main:
                        ckpt.save_checkpoint(self.ckpt_dir, done, self.model, self.optimizer, self.scheduler,
                                             {"heldout": history, "entropy_control": self.control.state()},
                                             keep=cfg.train.keep_checkpoints,
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
            from r1.report.run import write_run_report

            summary = write_run_report(self.out, cfg, history)
        self.dist.barrier()
        return summary

    def save_model(self) -> None:
        """The policy, with the generation settings it is evaluated with (so that transformers,
        vLLM and other tools sample it as r1 does, and stop at every id that ends it)."""
        heldout, rollout = self.cfg.eval, self.cfg.rollout
        self.policy.save(self.out / "model", generation={
            "eos_token_id": sorted(self.eos), "do_sample": heldout.temperature > 0,
            "temperature": heldout.temperature, "top_p": heldout.top_p,
            "max_new_tokens": heldout.max_new_tokens or rollout.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id}, chat_template=self.prompt.saved_chat_template(self.tokenizer))
