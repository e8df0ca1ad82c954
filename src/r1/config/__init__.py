"""Typed configuration: YAML recipes plus ``--set key=value`` overrides.

Each field is documented once, in `r1.config.sections`. Unknown keys and wrong types are
errors that name the key (`R1Error`), never silently ignored. Settings are a leaf: they import
nothing of r1 but its errors and constants; the names they refer to (rewards, tasks) are
checked against their registries where a run starts (`rewards.check_rewards`,
`data.tasks.build_task`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from r1.config.files import apply_overrides, merge, read_yaml
from r1.config.sections import (AS_GIVEN, AlgorithmConfig, CurriculumConfig, EngineSettings, EntropyConfig,
                                FilterConfig, HeldoutConfig, LoraConfig, ModelConfig, OptimConfig, PromptConfig,
                                RolloutConfig, ServeConfig, TaskConfig, ToolsConfig, TrackingConfig, TrainConfig, _Strict)
from r1.config.sft import SFTConfig, SFTDataConfig, SFTTrainConfig, build_sft_config
from r1.errors import R1Error, describe_validation_error

__all__ = ["AS_GIVEN", "AlgorithmConfig", "Config", "CurriculumConfig", "EngineSettings", "EntropyConfig",
           "FilterConfig", "HeldoutConfig", "LoraConfig", "ModelConfig", "OptimConfig", "PromptConfig", "RolloutConfig",
           "SFTConfig", "SFTDataConfig", "SFTTrainConfig", "ServeConfig", "TaskConfig", "ToolsConfig", "TrackingConfig",
           "TrainConfig",
           "apply_overrides", "build_config", "build_sft_config", "dump_config", "load_config", "merge", "read_yaml",
           "split_seed"]


class Config(_Strict):
    seed: int = Field(0, description="seeds the data split (unless task.split_seed is set), the prompt order, "
                      "sampling and the model's init noise")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the policy")
    task: TaskConfig = Field(default_factory=TaskConfig, description="problems and their verifier")
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="how a problem becomes a prompt")
    rewards: dict[str, float] = Field(
        default_factory=lambda: {"accuracy": 1.0, "format": 0.5, "tag_count": 0.5},
        description="reward name (or path/to/file.py:function) -> weight; the total reward is the weighted sum",
    )
    reward_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="reward name -> its keyword parameters (e.g. language: {target: zh})")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="sampling the G completions")
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig, description="advantages, loss, KL")
    entropy: EntropyConfig = Field(default_factory=EntropyConfig, description="entropy bonus and control, the "
                                   "collapse warning")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="AdamW and the LR schedule")
    train: TrainConfig = Field(default_factory=TrainConfig, description="steps, checkpoints, evaluations")
    eval: HeldoutConfig = Field(default_factory=HeldoutConfig, description="held-out evaluation during training")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="where metrics go")
    tools: ToolsConfig | None = Field(None, description="multi-turn episodes in which the model calls tools, their "
                                      "results inserted into its context and kept out of the loss (none: one turn)")

    @field_validator("rewards")
    @classmethod
    def _some_reward(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("at least one reward is needed")
        return value

    @model_validator(mode="after")
    def _entropy_settings(self):
        if self.algorithm.policy_loss == "kl_cov" and self.algorithm.mu < 2:
            raise ValueError("algorithm.policy_loss kl_cov penalises the policy's move away from pi_old within a "
                             "step, and with algorithm.mu 1 there is none: set algorithm.mu >= 2, or use clip_cov")
        e = self.entropy
        if e.control == "temperature" and not e.temperature_min <= self.rollout.temperature <= e.temperature_max:
            raise ValueError(f"rollout.temperature {self.rollout.temperature} (where entropy.control temperature "
                             f"starts) is outside [entropy.temperature_min {e.temperature_min}, "
                             f"entropy.temperature_max {e.temperature_max}]")
        return self

    @model_validator(mode="after")
    def _reward_params_match(self):
        for name in self.reward_params:
            if name not in self.rewards:
                raise ValueError(f"reward_params.{name}: {name!r} is not one of the rewards in use")
        return self


def build_config(data: dict, overrides: list[str] | None = None, source: str = "") -> Config:
    data = merge({}, data)
    if "rewards" not in data:
        # `--set rewards.NAME=W` adds to the default rewards rather than replacing them all;
        # a recipe that writes a `rewards:` mapping states the complete set.
        data["rewards"] = Config.model_fields["rewards"].default_factory()
    data = apply_overrides(data, overrides or [])
    try:
        return Config(**data)
    except ValidationError as e:
        msg = describe_validation_error(e)
        raise R1Error(f"{source}: {msg}" if source else msg) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    data = read_yaml(path) if path else {}
    return build_config(data, overrides, source=str(path) if path else "")


def dump_config(cfg: BaseModel, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def split_seed(cfg: Config) -> int:
    """The seed of a GRPO config's train/held-out split: `task.split_seed`, else the run's seed."""
    return cfg.seed if cfg.task.split_seed is None else cfg.task.split_seed
