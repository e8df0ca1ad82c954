"""Rewards: `fn(completions, examples, task) -> list[float | None]`, registered by name."""
