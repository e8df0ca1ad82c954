"""Tasks read from a JSONL file or a Hugging Face dataset: GSM8K and MATH.

JSONL records need a question (`problem` or `question`) and a gold answer (`answer`, a
GSM8K rationale ending in ``#### N``, or a MATH `solution` whose last ``\\boxed{}`` is
the answer).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from r1.data.answers import last_boxed
from r1.data.tasks.base import Example, Task, TaskParams, split_pool
from r1.data.verify import answers_match
from r1.errors import R1Error
from r1.runs import read_jsonl


class FileParams(TaskParams):
    path: str | None = Field(None, description="local JSONL file")
    dataset: str | None = Field(None, description="Hugging Face dataset id")
    subset: str | None = Field(None, description="the dataset's configuration (GSM8K: main)")
    split: str = Field("train", description="the dataset split to read")
    heldout_path: str | None = Field(None, description="separate JSONL for held-out problems")

    @model_validator(mode="after")
    def _one_source(self):
        if self.path and self.dataset:
            raise ValueError("give either path or dataset, not both")
        return self


def gsm8k_gold(answer: str) -> str:
    return answer.split("####")[-1].strip().replace(",", "") if "####" in answer else answer.strip()


class _FileTask(Task):
    default_dataset: tuple[str, str | None] = ("", None)

    def _records(self, path: str | None) -> list[tuple[str, dict]]:
        p = self.params
        if path:
            rows = read_jsonl(path)
            where = [f"{path}:{i + 1}" for i in range(len(rows))]
        else:
            name, subset = (p.dataset, p.subset) if p.dataset else self.default_dataset
            try:
                import datasets
            except ImportError:
                raise R1Error(f"loading {name!r} from the Hugging Face Hub needs the datasets package "
                              "(pip install datasets), or give a local JSONL file (--data, task.params.path)") from None
            try:
                rows = list(datasets.load_dataset(name, subset, split=p.split))
            except Exception as e:
                raise R1Error(f"cannot load dataset {name!r} from the Hugging Face Hub ({str(e).splitlines()[0]}); "
                              "it is downloaded on first use, so without a connection give a local JSONL file "
                              "(--data, task.params.path)") from None
            where = [f"{name}[{i}]" for i in range(len(rows))]
        return list(zip(where, rows))

    def _example(self, where: str, row: dict) -> Example:
        question = row.get("problem", row.get("question"))
        if not isinstance(question, str) or not question.strip():
            raise R1Error(f"{where}: missing field 'problem' (or 'question')")
        gold = self.gold(row)
        if gold is None:
            raise R1Error(f"{where}: missing field 'answer' (or a 'solution' with \\boxed{{}})")
        meta = {k: row[k] for k in ("subject", "level") if row.get(k) is not None}
        return Example(id=str(row.get("id", where)), question=question, answer=gold, meta=meta)

    def gold(self, row: dict) -> str | None:
        raise NotImplementedError

    def all_examples(self) -> list[Example]:
        """Every record of the source, in order (evaluation uses them all)."""
        return [self._example(w, r) for w, r in self._records(self.params.path)]

    def splits(self, train_size, heldout_size):
        pool = self.all_examples()
        if self.params.heldout_path:
            held = [self._example(w, r) for w, r in self._records(self.params.heldout_path)]
            return (pool[:train_size] if train_size else pool), held[:heldout_size]
        return split_pool(pool, train_size, heldout_size, self.seed)

    def verify(self, prediction, example):
        return answers_match(example.answer, prediction)


class GSM8KTask(_FileTask):
    name = "gsm8k"
    Params = FileParams
    answer_hint = "the final number"
    fallback = "none"
    default_dataset = ("openai/gsm8k", "main")

    def gold(self, row):
        ans = row.get("answer")
        return gsm8k_gold(str(ans)) if ans is not None else None


class MathTask(_FileTask):
    name = "math"
    Params = FileParams
    answer_hint = "the final answer in \\boxed{}"
    fallback = "boxed"
    default_dataset = ("DigitalLearningGmbH/MATH-lighteval", None)

    def gold(self, row):
        if row.get("answer") not in (None, ""):
            return str(row["answer"])
        sol = row.get("solution")
        return last_boxed(sol) if isinstance(sol, str) else None
