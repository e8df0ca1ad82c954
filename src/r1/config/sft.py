"""`r1 sft` recipes: the data, the training loop, and their validation."""

from __future__ import annotations

from pydantic import Field, ValidationError

from r1.config.files import apply_overrides, merge
from r1.config.sections import ModelConfig, OptimConfig, TrackingConfig, _Strict
from r1.errors import R1Error, describe_validation_error


class SFTDataConfig(_Strict):
    path: str | None = Field(None, description="JSONL: messages, or prompt/completion records (r1 filter output)")
    dataset: str | None = Field(None, description="Hugging Face dataset id")
    split: str = Field("train", description="the dataset's split")
    limit: int | None = Field(None, ge=1, description="only the first N conversations")


class SFTTrainConfig(_Strict):
    epochs: float = Field(1.0, gt=0.0, description="passes over the data (fractions allowed)")
    steps: int | None = Field(None, ge=1, description="optimizer steps (overrides epochs)")
    max_length: int = Field(1024, ge=8, description="tokens per packed row (longer conversations are cut)")
    pack: bool = Field(True, description="several conversations per row, no attention across them")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    save_every: int = Field(50, ge=1, description="checkpoint every N steps (and at the end)")
    keep_checkpoints: int = Field(2, ge=1, description="the newest N checkpoints are kept, older ones deleted")


class SFTConfig(_Strict):
    """`r1 sft` recipes: chat SFT with the loss on assistant tokens only."""
    seed: int = Field(0, description="seeds the data order and the model's init noise")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the model to fine-tune")
    data: SFTDataConfig = Field(default_factory=SFTDataConfig, description="the conversations")
    train: SFTTrainConfig = Field(default_factory=SFTTrainConfig, description="epochs, packing, checkpoints")
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig(lr=2e-5, micro_batch_size=4, warmup_steps=2),
                               description="AdamW and the LR schedule")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="where metrics go")


def build_sft_config(data: dict, overrides: list[str] | None = None, source: str = "") -> SFTConfig:
    data = apply_overrides(merge({}, data), overrides or [])
    try:
        return SFTConfig(**data)
    except ValidationError as e:
        msg = describe_validation_error(e)
        raise R1Error(f"{source}: {msg}" if source else msg) from None
