"""Chat SFT (R1's cold start and stage 3, and distillation into a student): the loss on
assistant tokens only, conversations packed without attention across them.

A step = `grad_accum` micro-batches of `optim.micro_batch_size` packed rows; the loss is
the mean over every assistant token of the step (exact under accumulation). Under
`accelerate launch` (DDP or FSDP, see `r1.trainers.distributed`) the same rows are split
over the processes and the token count is the whole step's, so N processes take the step
one process would; rank 0 writes. The rows of
step s are a pure function of (seed, s) — a seeded permutation per epoch — so a resumed run
trains on exactly what an uninterrupted one would. Output: `model/` (HF folder, LoRA
merged), `metrics.jsonl` (+ TensorBoard), `plots/loss.png`, `report.md`, `summary.json`,
`config.yaml`, `versions.json`, atomic checkpoints.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any, Callable

import torch

from r1.config import SFTConfig
from r1.data.chat import (IGNORE, Pack, collate, load_conversations, pack, sft_chat_template,
                          tokenize_conversation)
from r1.data.prompts import PromptFormat
from r1.errors import R1Error
from r1.models import default_device
from r1.report.sft import write_sft_report
from r1.trainers import checkpoint as ckpt
from r1.trainers.base import Trainer
from r1.trainers.policy import Policy, make_scheduler, step_indices


def sft_loss_sum(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """(sum of the cross-entropy over assistant tokens, their number). The LM head runs only
    at the positions some row learns from."""
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = (targets != IGNORE).any(0).nonzero()[:, 0]  # positions (of the inputs) that predict a label
    if keep.numel() == 0:
        return torch.zeros((), requires_grad=True), 0
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                position_ids=batch["position_ids"], logits_to_keep=keep, use_cache=False)
    logits = out.logits.float()  # [b, len(keep), V]
    tgt = targets[:, keep]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum")
    return loss, int((tgt != IGNORE).sum())


class SFTTrainer(Trainer):
    """`prompt_for(tokenizer)`: the prompt the trained model is sampled with (a pipeline's or a
    distillation teacher's), written into model/'s chat template; without it model/ keeps the
    chat template SFT trained through."""

    cfg: SFTConfig

    def __init__(self, cfg: SFTConfig, out_dir, *, resume: bool = False,
                 prompt_for: Callable[[Any], PromptFormat] | None = None):
        super().__init__(cfg, out_dir, resume=resume)
        self.prompt_for = prompt_for

    def prepare(self) -> None:
        cfg = self.cfg
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        convs = load_conversations(cfg.data.path, cfg.data.dataset, cfg.data.split, cfg.data.limit)
        self.device = self.dist.device or default_device()
        fsdp = self.dist.fsdp
        # the schedule is set once the rows are known
        self.policy = Policy(cfg.model, cfg.optim, 1, self.device, fsdp=fsdp, is_main=self.dist.is_main,
                             grad_reduce=self.dist.grad_reduce)
        self.policy.presharded = None
        tok = self.policy.tokenizer
        examples = [tokenize_conversation(tok, m, cfg.train.max_length) for m in convs]
        usable = [e for e in examples if any(x != IGNORE for x in e[1])]
        self.dropped = len(examples) - len(usable)
        if not usable:
            raise R1Error(f"no conversation keeps an assistant token within max_length {cfg.train.max_length}")
        if cfg.train.pack:
            self.rows = pack(usable, cfg.train.max_length)
        else:
            self.rows = []
            for ids, labels in usable:
                p = Pack()
                p.add(ids, labels)
                self.rows.append(p)
        self.stats = {"conversations": len(convs), "dropped_no_assistant_tokens": self.dropped,
                      "rows": len(self.rows), "tokens": sum(len(p.ids) for p in self.rows),
                      "assistant_tokens": sum(sum(x != IGNORE for x in p.labels) for p in self.rows)}
        self.stats["fill"] = self.stats["tokens"] / (len(self.rows) * cfg.train.max_length)
        per_step = cfg.optim.micro_batch_size * cfg.train.grad_accum
        self.per_step = per_step
        self.dist.shard(list(range(per_step)), "optim.micro_batch_size × train.grad_accum (rows a step)")
        self.total_steps = cfg.train.steps or max(1, math.ceil(cfg.train.epochs * len(self.rows) / per_step))
        self.policy.scheduler = make_scheduler(self.policy.optimizer, cfg.optim, self.total_steps)
        self.pad_id = self.policy.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.policy.tokenizer.eos_token_id or 0

    def _batch(self, idx: list[int]) -> dict[str, torch.Tensor]:
        b = collate([self.rows[i] for i in idx], self.pad_id)
        return {k: v.to(self.device) for k, v in b.items()}

    def train_step(self, step: int) -> dict[str, float]:
        cfg, p = self.cfg, self.policy
        idx = self.dist.shard(step_indices(len(self.rows), self.per_step, cfg.seed, step))
        mbs = cfg.optim.micro_batch_size
        micro = [idx[i : i + mbs] for i in range(0, len(idx), mbs)]  # as many on every rank
        n_tok = self.dist.sum([float(sum(sum(x != IGNORE for x in self.rows[i].labels[1:]) for i in idx))])[0]
        p.compute_model.train()
        total = 0.0
        for k, m in enumerate(micro):
            with p.autocast_ctx():
                loss_sum, _ = sft_loss_sum(p.compute_model, self._batch(m))
            p.backward(loss_sum / max(n_tok, 1))
            p.accumulate_grads(last=k == len(micro) - 1)
            total += float(loss_sum.detach())
        total = self.dist.sum([total])[0]
        grad_norm = p.step()
        p.scheduler.step()
        return {"loss": total / max(n_tok, 1), "tokens": float(n_tok), "grad_norm": grad_norm,
                "lr": p.scheduler.get_last_lr()[0]}

    def train(self) -> dict:
        cfg, main = self.cfg, self.dist.is_main
        self.prepare()
        start, _, progress, tracker = self.start_run(self.total_steps, "SFT")
        progress.print(f"{self.stats['conversations']} conversations -> {self.stats['rows']} rows of "
                       f"<= {cfg.train.max_length} tokens ({100 * self.stats['fill']:.0f}% filled), "
                       f"{self.total_steps} steps")
        try:
            for step in range(start, self.total_steps):
                t0 = time.perf_counter()
                row = self.train_step(step)
                done = step + 1
                row.update({"step": done, "time/step": time.perf_counter() - t0,
                            "epoch": done * self.per_step / len(self.rows)})
                row["tokens_per_s"] = row["tokens"] / row["time/step"]
                if main:
                    tracker.log(row)
                    progress.update(1, f"loss {row['loss']:.3f} lr {row['lr']:.1e}")
                if done % cfg.train.save_every == 0 or done == self.total_steps:
                    model_state, optim_state = self.policy.checkpoint_states()  # FSDP: a collective
                    if main:
                        ckpt.save_checkpoint(self.ckpt_dir, done, self.policy.model, self.policy.optimizer,
                                             self.policy.scheduler, {}, keep=cfg.train.keep_checkpoints,
                                             model_state=model_state, optim_state=optim_state)
                    self.dist.barrier()
        finally:
            progress.close()
            if tracker is not None:
                tracker.close()
        tok = self.policy.tokenizer
        template = self.prompt_for(tok).saved_chat_template(tok) if self.prompt_for else None
        self.policy.save(self.out / "model", chat_template=template or sft_chat_template(tok))  # every rank
        summary = write_sft_report(self.out, self.cfg.model.name, self.total_steps, self.stats) if main else {}
        self.dist.barrier()
        return summary
