"""HumanEval: complete a Python function; verified by running the problem's tests in the
sandbox (`r1.data.code`). JSONL records (the project's shared data or the original
HumanEval.jsonl) need `prompt`, `test` and `entry_point`; `canonical_solution` is kept as
the reference answer. Without a path, the `openai/openai_humaneval` dataset is loaded.
"""

from __future__ import annotations

from pydantic import Field

from r1.data.tasks.base import Example
from r1.data.tasks.files import FileParams, _FileTask
from r1.errors import R1Error


class HumanEvalParams(FileParams):
    split: str = Field("test", description="the dataset split to read")
    timeout_s: float = Field(5.0, gt=0, description="wall-clock limit of one test run")
    memory_mb: int = Field(512, ge=64, description="memory limit of one test run")


class HumanEvalTask(_FileTask):
    name = "humaneval"
    Params = HumanEvalParams
    answer_hint = "the complete function in a ```python code block"
    fallback = "none"
    lenient = False
    default_dataset = ("openai/openai_humaneval", None)

    def _example(self, where: str, row: dict) -> Example:
        missing = [k for k in ("prompt", "test", "entry_point") if not isinstance(row.get(k), str)]
        if missing:
            raise R1Error(f"{where}: missing field {missing[0]!r} (HumanEval records need prompt, test, entry_point)")
        question = ("Complete the following Python function. Write the whole function, with its "
                    f"signature, in one ```python code block.\n\n```python\n{row['prompt']}```")
        meta = {"prompt": row["prompt"], "test": row["test"], "entry_point": row["entry_point"]}
        return Example(id=str(row.get("task_id", row.get("id", where))), question=question,
                       answer=str(row.get("canonical_solution", row.get("answer", ""))), meta=meta)

    def extract(self, completion: str) -> str | None:
        from r1.data.code import extract_code

        return extract_code(completion)

    def equivalent(self, a, b) -> bool:
        """Two programs are one answer when their code is the same, formatting and comments aside."""
        from r1.data.code import same_program

        return same_program(a, b)

    def verify(self, prediction, example) -> bool:
        return self.verify_batch([prediction], [example])[0]

    def verify_batch(self, codes: list[str | None], examples: list[Example]) -> list[bool]:
        from r1.data.code import pass_fractions

        p = self.params
        fr = pass_fractions(codes, [ex.meta for ex in examples], timeout_s=p.timeout_s, memory_mb=p.memory_mb)
        return [f == 1.0 for f in fr]
