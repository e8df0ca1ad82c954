"""`mixture`: reasoning problems with a verifier plus general prompts without one — the
prompt set of R1's last RL stage ("RL for all scenarios"), where rule rewards score the
reasoning prompts and a reward model the general ones (`reward_model` with
`only_general: true`). General prompts come from a JSONL of `messages` (the first user
turn) or `prompt`/`problem`/`question` rows; they carry meta {"general": true} and never
verify. The held-out set is the reasoning task's, so evaluation stays comparable.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from pydantic import Field

from r1.data.tasks.base import Example, Task, TaskParams
from r1.errors import R1Error


class MixtureParams(TaskParams):
    reasoning: dict[str, Any] = Field(..., description="{name, params} of the reasoning task")
    general: str = Field(..., description="JSONL of general prompts")
    general_share: float = Field(0.25, ge=0.0, lt=1.0, description="share of general prompts in training")


class MixtureTask(Task):
    name = "mixture"
    Params = MixtureParams
    nested = True  # built with the task lookup, for its reasoning task

    def __init__(self, params: MixtureParams, seed: int = 0, *, get_task: Callable[..., Task]):
        super().__init__(params, seed)
        r = params.reasoning
        if not isinstance(r, dict) or "name" not in r or r["name"] == "mixture":
            raise R1Error("task.params.reasoning needs the name (and params) of a reasoning task")
        self.inner = get_task(r["name"], r.get("params", {}), seed=seed)
        self.answer_hint = self.inner.answer_hint
        self.fallback = self.inner.fallback

    def _general(self) -> list[Example]:
        from r1.runs import read_jsonl

        out = []
        for i, row in enumerate(read_jsonl(self.params.general)):
            text = None
            if isinstance(row.get("messages"), list):
                text = next((m.get("content") for m in row["messages"] if m.get("role") == "user"), None)
            text = text or next((row[k] for k in ("prompt", "problem", "question") if isinstance(row.get(k), str)), None)
            if not isinstance(text, str) or not text.strip():
                raise R1Error(f"{self.params.general}:{i + 1}: no user prompt (messages, prompt, problem or question)")
            out.append(Example(id=f"general-{i}", question=text, answer="", meta={"general": True}))
        return out

    def splits(self, train_size, heldout_size):
        train, held = self.inner.splits(train_size, heldout_size)
        general = self._general()
        share = self.params.general_share
        n_general = round(len(train) * share / (1 - share)) if share else 0
        rng = random.Random(self.seed)
        picked = [general[i % len(general)] for i in range(n_general)] if general else []
        mixed = train + picked
        rng.shuffle(mixed)
        return mixed, held

    def extract(self, completion):
        return self.inner.extract(completion)

    def verify(self, prediction, example):
        if example.meta.get("general"):
            return False
        return self.inner.verify(prediction, example)
