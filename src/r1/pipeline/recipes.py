"""The typed sections of `r1 pipeline` and `r1 distill` recipes: a misspelt key anywhere is
a one-line error naming it. The sections that configure a trainer, a sampler or the filter
(`grpo`, `sft`, `generate`, `filter`, a stage's `data`) are checked by those configs."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from r1.errors import R1Error, describe_validation_error


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PipelineEval(_Strict):
    """How each stage's model (and the base) is evaluated on the task's held-out set."""

    samples: int = Field(2, ge=1, description="samples per held-out problem")
    max_new_tokens: int | None = Field(None, ge=1, description="default: the shared rollout's")
    limit: int | None = Field(None, ge=1, description="only the first N held-out problems")
    language: str = Field("en", description="target language of the language-consistency column")


class DistillEval(_Strict):
    """The student before and after, on a training run's held-out set with its prompts."""

    from_run: str = Field(..., description="a training run folder (its held-out set, prompts and verifier)")
    samples: int = Field(2, ge=1, description="samples per held-out problem")
    max_new_tokens: int = Field(64, ge=1, description="new tokens per sample at most")
    limit: int | None = Field(None, ge=1, description="only the first N held-out problems")


class _Stage(_Strict):
    name: str = Field(..., description="the stage's folder under the pipeline's output")
    input: str | None = Field(None, description="the model it trains: an earlier stage, or base "
                              "(default: the previous stage's model)")


class SFTStage(_Stage):
    kind: Literal["sft"] = Field(description="the stage's kind: sft (SFT)")
    data: dict[str, Any] = Field(default_factory=dict, description="the SFT data section (path, dataset, ...); "
                                 "rows with a raw `question` get the pipeline's prompt")
    sft: dict[str, Any] = Field(default_factory=dict, description="SFT settings (train, optim, ...)")


class DistillStage(_Stage):
    kind: Literal["distill"] = Field(description="the stage's kind: distill (distillation)")
    teacher: str | None = Field(None, description="a stage (or base) whose model samples the shared task")
    generate: dict[str, Any] = Field(default_factory=dict, description="sampling settings (r1 generate)")
    filter: dict[str, Any] = Field(default_factory=dict, description="rejection-sampling settings (r1 filter)")
    general_data: str | None = Field(None, description="JSONL of general conversations mixed into the SFT data")
    sft: dict[str, Any] = Field(default_factory=dict, description="SFT settings (train, optim, ...)")


class GRPOStage(_Stage):
    kind: Literal["grpo"] = Field(description="the stage's kind: grpo (GRPO)")
    grpo: dict[str, Any] = Field(default_factory=dict, description="GRPO settings (rewards, algorithm, optim, "
                                 "train, ...) on the shared task, prompt and rollout")


Stage = Annotated[Union[SFTStage, DistillStage, GRPOStage], Field(discriminator="kind")]
KINDS = ("sft", "distill", "grpo")


class PipelineRecipe(_Strict):
    seed: int = Field(0, description="seeds every stage and evaluation")
    model: str = Field("smollm2-135m", description="the base model")
    task: dict[str, Any] | None = Field(None, description="the shared task (as in a GRPO recipe)")
    prompt: dict[str, Any] | None = Field(None, description="the shared prompt (as in a GRPO recipe)")
    rollout: dict[str, Any] | None = Field(None, description="the shared rollout settings (stop strings...)")
    eval: PipelineEval = Field(default_factory=PipelineEval, description="evaluation of every stage")
    stages: list[Stage] = Field(..., min_length=1, description="the stages, in order")


class DistillRecipe(_Strict):
    seed: int = Field(0, description="seeds sampling and SFT")
    generate: dict[str, Any] = Field(..., description="the teacher and its sampling (r1 generate)")
    filter: dict[str, Any] = Field(default_factory=dict, description="rejection sampling (r1 filter)")
    sft: dict[str, Any] = Field(..., description="the student and its SFT")
    eval: DistillEval | None = Field(None, description="evaluate the student before and after")


def parse(model: type[BaseModel], recipe: Any, source: str) -> BaseModel:
    """`recipe` validated as `model`, or an R1Error naming the first bad key."""
    if not isinstance(recipe, dict):
        raise R1Error(f"{source}: a recipe is a mapping of sections, got {type(recipe).__name__}")
    try:
        return model.model_validate(recipe)
    except ValidationError as e:
        first = e.errors()[0]
        loc = list(first["loc"])
        if len(loc) >= 2 and loc[0] == "stages" and isinstance(loc[1], int):  # name the stage, drop pydantic's tag
            stage = recipe["stages"][loc[1]]
            name = stage.get("name") if isinstance(stage, dict) else None
            where = f"stage {name!r}" if isinstance(name, str) else f"stages[{loc[1]}]"
            if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
                got = stage.get("kind") if isinstance(stage, dict) else None
                raise R1Error(f"{source}: {where}: kind must be one of {', '.join(KINDS)} (got {got!r})") from None
            rest = loc[3:] if len(loc) > 2 and loc[2] in KINDS else loc[2:]
            what = ".".join(map(str, rest))
            msg = (f"unknown key {what!r}" if first["type"] == "extra_forbidden" else
                   f"{what}: missing" if first["type"] == "missing" else f"{what}: {first['msg']}")
            raise R1Error(f"{source}: {where}: {msg}") from None
        raise R1Error(f"{source}: {describe_validation_error(e).removeprefix('config: ')}") from None
