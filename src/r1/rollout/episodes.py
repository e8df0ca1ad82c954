"""Episodes of several turns over any `RolloutEngine`: the model writes until it calls a tool
(`</tool_call>`) or ends; an `Environment` answers the turn (the built-in `ToolEnvironment`
runs its calls; a class of your own may answer anything); what it gives back goes into the
model's context, rendered as the chat template renders a `tool` turn where the template knows
tool turns (else inside `<tool_response>` tags in the same turn); the model goes on, until the
environment gives nothing back or the episode's turn or token budget is spent.

The result is one `Generation` row per episode whose `completion_ids` hold the model's tokens
and the inserted results in order, with `loss_masks` 1 on the model's tokens and 0 on the
inserted ones, so the policy loss and the KL see only what the model wrote; `stats` gives,
per episode, its turns, calls, errors and calls per tool.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Protocol

from r1.data.tools import CALL_CLOSE, Tool, parse_tool_calls, results_text, run_tool_calls
from r1.rollout.base import RolloutEngine
from r1.types import Generation, SamplingParams

@dataclass
class Observation:
    """What an environment answers to one model turn: the texts given back to the model (each
    rendered as a `tool` turn, or a `<tool_response>` block), whether the episode is over, and
    the turn's calls per tool, its malformed calls and its failed calls (for the metrics)."""

    results: list[str] = field(default_factory=list)
    done: bool = False
    calls: dict[str, int] = field(default_factory=dict)
    malformed: int = 0  # calls that did not parse (counted as calls and as failures, under no tool)
    errors: int = 0


class Environment(Protocol):
    """A multi-turn environment: `reset` with the episode's prompt (its text), then `step` with
    each model turn's text (cut after its first `</tool_call>`). An episode ends when a step
    says `done` or gives nothing back, or when the turn or token budget is spent."""

    def reset(self, prompt: str) -> None: ...

    def step(self, text: str) -> Observation: ...


class ToolEnvironment:
    """The built-in environment: a turn's `<tool_call>` blocks run as calls of `tools` and their
    results go back; a turn without a call ends the episode. A malformed call, an unknown tool,
    wrong arguments, an exception or a timeout give an error result."""

    def __init__(self, tools: dict[str, Tool], timeout_s: float = 10.0):
        self.tools, self.timeout_s = tools, timeout_s

    def reset(self, prompt: str) -> None:
        pass

    def step(self, text: str) -> Observation:
        if CALL_CLOSE not in text:
            return Observation(done=True)
        calls, malformed = parse_tool_calls(text)
        results = run_tool_calls(calls, self.tools, self.timeout_s)
        per_tool: dict[str, int] = {}
        for c in calls:  # names the model made up count as "unknown", not as keys of their own
            name = c.name if c.name in self.tools else "unknown"
            per_tool[name] = per_tool.get(name, 0) + 1
        return Observation([x.content for x in results] + [f"error: {m}" for m in malformed],
                           done=not (calls or malformed), calls=per_tool, malformed=len(malformed),
                           errors=sum(x.error for x in results) + len(malformed))


@dataclass
class EpisodeSettings:
    tools: dict[str, Tool]
    max_turns: int = 4  # model turns per episode
    max_tokens: int = 256  # tokens per episode: the model's and the inserted results' together
    tool_timeout_s: float = 10.0
    environment: Callable[[], Environment] | None = None  # a new one per episode; default: ToolEnvironment

    def new_environment(self) -> Environment:
        return self.environment() if self.environment else ToolEnvironment(self.tools, self.tool_timeout_s)


@dataclass
class EpisodeStats:
    turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0  # calls whose result is an error, malformed calls included
    calls_per_tool: dict[str, int] = field(default_factory=dict)


def _cut_after_call(tokenizer, tokens: list[int]) -> int:
    """How many of a turn's tokens (whose text holds `</tool_call>`) reach the end of its first
    `</tool_call>`: the sampler stopped there, so only the few grace tokens written after it are
    dropped, found from the end."""
    k = len(tokens)
    while k > 1 and CALL_CLOSE in tokenizer.decode(tokens[: k - 1]):
        k -= 1
    return k


def run_episodes(engine: RolloutEngine, tokenizer, prompt_ids: list[list[int]], n: int, params: SamplingParams,
                 settings: EpisodeSettings) -> tuple[Generation, list[EpisodeStats]]:
    """`n` episodes per prompt (rows grouped by prompt, as `engine.generate` groups them); each
    turn writes at most `params.max_new_tokens`, each episode `settings.max_tokens` in all."""
    rows = len(prompt_ids) * n
    ids: list[list[int]] = [[] for _ in range(rows)]
    logprobs: list[list[float]] = [[] for _ in range(rows)]
    masks: list[list[int]] = [[] for _ in range(rows)]
    finish = ["length"] * rows
    stats = [EpisodeStats() for _ in range(rows)]
    stop = tuple(params.stop) + (CALL_CLOSE,)
    active, seconds = list(range(rows)), 0.0
    envs = [settings.new_environment() for _ in range(rows)]
    for r, env in enumerate(envs):
        env.reset(tokenizer.decode(prompt_ids[r // n]))
    for turn in range(settings.max_turns):
        room = {r: settings.max_tokens - len(ids[r]) for r in active}
        active = [r for r in active if room[r] > 0]
        if not active:
            break
        p = dataclasses.replace(params, stop=stop, max_new_tokens=min(params.max_new_tokens, max(room.values())),
                                seed=params.seed + 7919 * turn)  # params.max_new_tokens: a turn's cap
        if turn == 0:
            gen = engine.generate(prompt_ids, n, p)
        else:
            gen = engine.generate([prompt_ids[r // n] + ids[r] for r in active], 1, p)
        seconds += gen.seconds
        still = []
        for j, r in enumerate(active):
            toks, lps = gen.completion_ids[j][: room[r]], gen.logprobs[j][: room[r]]
            stats[r].turns += 1
            if CALL_CLOSE in tokenizer.decode(toks):
                keep = _cut_after_call(tokenizer, toks)
                toks, lps = toks[:keep], lps[:keep]
            ids[r] += toks
            logprobs[r] += lps
            masks[r] += [1] * len(toks)
            obs = envs[r].step(tokenizer.decode(toks))
            stats[r].tool_calls += sum(obs.calls.values()) + obs.malformed
            stats[r].tool_errors += obs.errors
            for name, k in obs.calls.items():
                stats[r].calls_per_tool[name] = stats[r].calls_per_tool.get(name, 0) + k
            if obs.done or not obs.results:
                finish[r] = "length" if len(toks) == room[r] else gen.finish_reasons[j]
                continue
            inserted = tokenizer(results_text(tokenizer, obs.results), add_special_tokens=False)["input_ids"]
            inserted = inserted[: settings.max_tokens - len(ids[r])]
            ids[r] += inserted
            logprobs[r] += [0.0] * len(inserted)
            masks[r] += [0] * len(inserted)
            finish[r] = "length"  # until a later turn ends it
            still.append(r)
        active = still
    texts = [tokenizer.decode(t) for t in ids]
    return Generation(ids, logprobs, finish, seconds, texts, loss_masks=masks,
                      episodes=[dataclasses.asdict(s) for s in stats]), stats


def episode_metrics(episodes: list[dict]) -> dict[str, float]:
    """Per-step means over `Generation.episodes`: turns and tool calls per episode, tool errors
    per call, the share of episodes that called a tool, and calls per tool per episode."""
    n = max(len(episodes), 1)
    calls = sum(e["tool_calls"] for e in episodes)
    out = {"episode_turns": sum(e["turns"] for e in episodes) / n, "tool_calls": calls / n,
           "tool_error_rate": sum(e["tool_errors"] for e in episodes) / calls if calls else 0.0,
           "tool_use_rate": sum(e["tool_calls"] > 0 for e in episodes) / n}
    for e in episodes:
        for name, k in e["calls_per_tool"].items():
            out[f"tool_calls/{name}"] = out.get(f"tool_calls/{name}", 0.0) + k / n
    return out


class EpisodeEngine:
    """A rollout engine whose every sample is a multi-turn episode with tools, over another
    engine (r1's, vLLM's): the trainer samples through it as through any engine."""

    def __init__(self, engine: RolloutEngine, tokenizer, settings: EpisodeSettings):
        self.engine, self.tokenizer, self.settings = engine, tokenizer, settings

    def generate(self, prompt_ids: list[list[int]], n: int, params: SamplingParams) -> Generation:
        return run_episodes(self.engine, self.tokenizer, prompt_ids, n, params, self.settings)[0]

    def sync_weights(self, model) -> None:
        self.engine.sync_weights(model)

    def __getattr__(self, name):  # release, model, eos_ids... of the engine underneath
        return getattr(self.engine, name)


def with_tools(engine: RolloutEngine, tokenizer, tools_cfg) -> RolloutEngine:
    """`engine` wrapped for a recipe's `tools:` section (`config.ToolsConfig`), or itself
    without one; an unknown tool is a one-line error here, before anything runs."""
    from r1.data.tools import get_tool

    if tools_cfg is None:
        return engine

    tools = {t.name: t for t in map(get_tool, tools_cfg.names)}
    environment = None
    if tools_cfg.environment:
        from r1.plugins import load_function

        cls = load_function(tools_cfg.environment, "environment")
        environment = lambda: cls(tools=tools)  # noqa: E731 — a new environment per episode
    return EpisodeEngine(engine, tokenizer, EpisodeSettings(tools, tools_cfg.max_turns, tools_cfg.max_tokens,
                                                             tools_cfg.timeout_s, environment))
