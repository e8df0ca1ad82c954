"""The benchmarks `r1 eval` knows: where their data lives and how they are prompted and verified.

Each loads from a local JSONL (`--data`, fields `id`, `problem`, `answer`, as in the
project's shared data) or, without it, from its Hugging Face dataset id. Training tasks
(arithmetic, countdown) evaluate on their seeded held-out split.
"""

from __future__ import annotations

from dataclasses import dataclass

from r1.errors import R1Error

MATH_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class Benchmark:
    name: str
    task: str  # the r1 task whose verifier scores it
    dataset: str | None = None  # Hugging Face id used when no --data is given
    subset: str | None = None
    split: str = "test"
    suffix: str = MATH_SUFFIX  # appended to the problem (R1's usage rule for math)
    # answer extraction when there is no <answer> tag: "math" is \boxed{} then Math-Verify's
    # extraction ("final answer is $…$", LaTeX, numbers); "task": the task's own
    fallback: str = "math"


BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark("math500", "math", "HuggingFaceH4/MATH-500"),
        Benchmark("aime24", "math", "HuggingFaceH4/aime_2024", split="train"),
        Benchmark("aime25", "math", "yentinglin/aime_2025", split="train"),
        Benchmark("amc23", "math", "math-ai/amc23"),
        Benchmark("gsm8k", "gsm8k", "openai/gsm8k", "main"),
        Benchmark("arithmetic", "arithmetic", suffix="", fallback="last_number"),
        Benchmark("countdown", "countdown", suffix="", fallback="none"),
        # the task writes the instruction; the answer is the last ```python block, run against the tests
        Benchmark("humaneval", "humaneval", "openai/openai_humaneval", suffix="", fallback="task"),
    )
}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise R1Error(f"unknown benchmark {name!r}: known benchmarks are {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def load_problems(bench: Benchmark, data: str | None, task_params: dict | None = None,
                  seed: int = 0, heldout_size: int = 100):
    """(task, examples) for the benchmark; file benchmarks keep every record in file order."""
    from r1.data.tasks import get_task

    if bench.task in ("arithmetic", "countdown"):
        if data:
            raise R1Error(f"--data does not apply to the generated task {bench.name!r}")
        task = get_task(bench.task, task_params or {}, seed=seed)
        _, heldout = task.splits(0, heldout_size)
        return task, heldout
    params = {"path": data} if data else {"dataset": bench.dataset, "subset": bench.subset, "split": bench.split}
    task = get_task(bench.task, params, seed=seed)
    return task, task.all_examples()
