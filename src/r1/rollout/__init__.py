"""Rollout engines: token ids in; completion ids, sampling logprobs and finish reasons out."""
