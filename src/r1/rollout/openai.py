"""Sampling from an OpenAI-compatible chat API (vLLM, SGLang, DeepSeek, r1 serve...).

The reasoning comes back in `reasoning_content` (DeepSeek, vLLM's deepseek_r1 parser;
newer vLLM also says `reasoning`); a server that leaves it inside the content gets its
text split by `r1.data.reasoning.split_reasoning`. Requests run concurrently in threads;
the `openai` client retries 429s and 5xx with exponential backoff.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from r1.data.reasoning import split_reasoning
from r1.errors import R1Error
from r1.types import Sample


def sample_from_content(content: str, reasoning: str | None, tokens: int) -> Sample:
    if not reasoning:  # a server that leaves the thinking inside the content
        reasoning, content = split_reasoning(content)
    reasoning = (reasoning or "").strip()
    text = f"<think>\n{reasoning}\n</think>\n{content}" if reasoning else content
    return Sample(text=text, reasoning=reasoning, content=content, tokens=tokens)


def resolve_api_key(given: str | None) -> str | None:
    """The one rule of every command: --api-key, else $R1_API_KEY, else $OPENAI_API_KEY."""
    import os

    return given or os.environ.get("R1_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


class APISampler:
    """Samples an OpenAI-compatible endpoint; `api_key` None: `resolve_api_key`'s rule."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, concurrency: int = 8,
                 timeout_s: float = 600.0, max_retries: int = 5, rate_limit: float | None = None):
        try:
            from openai import OpenAI
        except ImportError:
            raise R1Error("API evaluation needs the openai package: pip install openai") from None
        self.client = OpenAI(base_url=base_url, api_key=resolve_api_key(api_key) or "EMPTY", timeout=timeout_s,
                             max_retries=max_retries)
        self.model = model
        self.concurrency = concurrency
        self.interval = 1.0 / rate_limit if rate_limit else 0.0  # seconds between request starts
        self._lock = threading.Lock()
        self._next = 0.0

    def _wait_turn(self) -> None:
        """At most `rate_limit` requests start per second, across all threads."""
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)

    def _one(self, content: str, params, seed: int) -> Sample:
        import openai

        self._wait_turn()
        try:
            resp = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": content}],
                temperature=params.temperature, top_p=params.top_p,
                max_tokens=params.max_new_tokens, seed=seed,
            )
        except openai.APIError as e:
            raise R1Error(f"API request to {self.client.base_url} failed: {e}") from None
        msg = resp.choices[0].message
        extra = msg.model_extra or {}
        reasoning = getattr(msg, "reasoning_content", None) or extra.get("reasoning_content") or extra.get("reasoning")
        tokens = resp.usage.completion_tokens if resp.usage else len((msg.content or "").split())
        return sample_from_content(msg.content or "", reasoning, tokens)

    def user_turn(self, content: str) -> str:
        """Sent as it is: the endpoint applies its model's own template."""
        return content

    def sample(self, contents: list[str], k: int, params) -> list[list[Sample]]:
        """k samples for each user message; request (i, j) gets seed params.seed + i*k + j."""
        jobs = [(i, j) for i in range(len(contents)) for j in range(k)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            results = list(pool.map(lambda ij: self._one(contents[ij[0]], params, params.seed + ij[0] * k + ij[1]), jobs))
        return [results[i * k : (i + 1) * k] for i in range(len(contents))]
