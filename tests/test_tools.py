"""Tools and multi-turn episodes: the calculator, schemas from functions, calls parsed from the
model's text, tools that raise or hang, episodes with their budgets, and the loss that sees
only the model's own tokens."""

from __future__ import annotations

import json
import time

import pytest

from r1.data.tools import (ToolCall, calculator, get_tool, parse_tool_calls, results_text, run_tool_calls,
                           tool_from_function)
from r1.errors import R1Error
from r1.rollout.episodes import EpisodeSettings, episode_metrics, run_episodes
from r1.types import Generation, SamplingParams


def test_the_calculator_is_exact_and_runs_no_code():
    assert calculator("37 + 48 * 2") == "133"
    assert calculator("123456789 * 987654321") == str(123456789 * 987654321)
    assert calculator("(7 - 10) / 4") == "-3/4 = -0.75"
    for bad in ("__import__('os').system('true')", "2 ** 10", "x + 1", "1 / 0", "9" * 300):
        with pytest.raises(ValueError):
            calculator(bad)


def test_a_function_becomes_a_tool_with_its_schema(tmp_path):
    def convert(amount: float, currency: str, rounded: bool = False) -> str:
        """Convert an amount into euros.

        Args:
            amount: how much
            currency: the ISO code, e.g. USD
        """
        return f"{amount} {currency}"

    tool = tool_from_function(convert)
    assert tool.schema() == {"type": "function", "function": {
        "name": "convert", "description": "Convert an amount into euros.",
        "parameters": {"type": "object", "additionalProperties": False, "required": ["amount", "currency"],
                       "properties": {"amount": {"type": "number", "description": "how much"},
                                      "currency": {"type": "string", "description": "the ISO code, e.g. USD"},
                                      "rounded": {"type": "boolean"}}}}}
    (tmp_path / "mytools.py").write_text("def shout(text: str) -> str:\n    'Upper-case the text.'\n"
                                         "    return text.upper()\n")
    shout = get_tool(f"{tmp_path / 'mytools.py'}:shout")
    assert shout.name == "shout" and shout.parameters["required"] == ["text"]
    assert run_tool_calls([ToolCall("shout", {"text": "hi"})], {"shout": shout})[0].content == "HI"
    with pytest.raises(R1Error, match="unknown tool 'abacus'.*calculator, python"):
        get_tool("abacus")
    with pytest.raises(R1Error, match="no such file"):
        get_tool(f"{tmp_path / 'none.py'}:f")


def test_calls_are_parsed_and_malformed_ones_reported():
    text = ('first <tool_call>{"name": "calculator", "arguments": {"expression": "1+2"}}</tool_call> then '
            '<tool_call>{"name": "calculator", "arguments": "{\\"expression\\": \\"3*4\\"}"}</tool_call> '
            '<tool_call>{"name": "calculator", "arguments": {"expression": "5"</tool_call> '
            '<tool_call>["calculator"]</tool_call> <tool_call>{"name": 7, "arguments": {}}</tool_call> '
            '<tool_call>{"name": "calculator"}')  # never closed: not a call
    calls, errors = parse_tool_calls(text)
    assert calls == [ToolCall("calculator", {"expression": "1+2"}), ToolCall("calculator", {"expression": "3*4"})]
    assert len(errors) == 3 and "not JSON" in errors[0]
    assert parse_tool_calls("no calls at all") == ([], [])


def test_a_tool_that_raises_hangs_or_is_called_wrongly_gives_an_error_result():
    def boom(x: int) -> str:
        """Raise."""
        raise RuntimeError("kaboom")

    def hang(x: int) -> str:
        """Hang."""
        time.sleep(30)
        return "late"

    tools = {t.name: t for t in (tool_from_function(boom), tool_from_function(hang), get_tool("calculator"))}
    t0 = time.perf_counter()
    out = run_tool_calls([ToolCall("boom", {"x": 1}), ToolCall("hang", {"x": 1}), ToolCall("calculator", {}),
                          ToolCall("calculator", {"expression": "2+2", "extra": 1}), ToolCall("abacus", {}),
                          ToolCall("calculator", {"expression": "2+2"})], tools, timeout_s=0.5)
    assert time.perf_counter() - t0 < 5
    assert [r.error for r in out] == [True, True, True, True, True, False]
    assert "RuntimeError: kaboom" in out[0].content and "within 0.5 s" in out[1].content
    assert "missing expression" in out[2].content and "unknown extra" in out[3].content
    assert "unknown tool 'abacus'" in out[4].content and out[5].content == "4"


def test_tools_that_never_return_do_not_starve_later_calls():
    """Each call runs in a thread of its own: a dozen calls that never return leave the next
    call as quick as the first."""
    import threading

    release = threading.Event()

    def stuck(x: int) -> str:
        """Wait for ever."""
        release.wait()
        return "late"

    tools = {"stuck": tool_from_function(stuck), "calculator": get_tool("calculator")}
    try:
        out = run_tool_calls([ToolCall("stuck", {"x": 1})] * 12 + [ToolCall("calculator", {"expression": "6*7"})],
                             tools, timeout_s=0.1)
    finally:
        release.set()
    assert [r.error for r in out] == [True] * 12 + [False] and out[-1].content == "42"
    assert "stuck did not finish within 0.1 s" in out[0].content


@pytest.mark.slow
def test_the_python_tool_runs_in_the_sandbox_with_its_limits():
    tools = {"python": get_tool("python")}
    ok, loop = run_tool_calls([ToolCall("python", {"code": "print(sum(range(10)))"}),
                               ToolCall("python", {"code": "while True: pass"})], tools, timeout_s=30)
    assert ok.content.strip() == "45" and not ok.error
    assert "stopped" in loop.content


class TextEngine:
    """Each row's next turn from `script(context_text, turn)`, cut at the stop strings (kept)
    and at max_new_tokens; EOS where the text ends without one."""

    def __init__(self, tok, script):
        self.tok, self.script, self.calls = tok, script, []

    def generate(self, prompt_ids, n, params):
        ids, texts, reasons = [], [], []
        for p in prompt_ids:
            for _ in range(n):
                context = self.tok.decode(p)
                text = self.script(context, len(self.calls))
                cut = min([text.index(s) + len(s) for s in params.stop if s in text], default=None)
                text = text if cut is None else text[:cut]
                toks = self.tok(text, add_special_tokens=False)["input_ids"] + ([self.tok.eos_token_id] if cut is None else [])
                reasons.append("stop" if len(toks) <= params.max_new_tokens else "length")
                toks = toks[: params.max_new_tokens]
                ids.append(toks)
                texts.append(self.tok.decode(toks))
        self.calls.append((len(prompt_ids), n, params.max_new_tokens))
        return Generation(ids, [[-0.5] * len(t) for t in ids], reasons, 0.01, texts)


CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "%s"}}</tool_call>'


def _episodes(tiny, script, turn_tokens=200, **kw):
    _, tok = tiny
    engine = TextEngine(tok, script)
    prompts = [tok("What is 17 + 25?", add_special_tokens=False)["input_ids"]]
    settings = EpisodeSettings(tools={"calculator": get_tool("calculator")}, **kw)
    gen, stats = run_episodes(engine, tok, prompts, 2, SamplingParams(max_new_tokens=turn_tokens, stop=("</answer>",)),
                              settings)
    return tok, engine, gen, stats


def test_an_episode_calls_the_calculator_reads_its_result_and_answers(tiny):
    def script(context, turn):  # the tiny template knows no tool turns: <tool_response> blocks
        if "</tool_call>" not in context:
            return "<think>I will use the calculator. " + CALL % "17 + 25" + " ignored"
        return "</think> <answer>" + context.split("<tool_response>\n")[-1].split("\n")[0] + "</answer>"

    tok, engine, gen, stats = _episodes(tiny, script, max_turns=3, max_tokens=400)
    assert len(gen.completion_ids) == 2 and engine.calls[0][:2] == (1, 2) and engine.calls[1][:2] == (2, 1)
    text = gen.texts[0]
    assert text.count("<tool_call>") == 1 and "ignored" not in text  # what followed the call was dropped
    assert "<tool_response>\n42\n</tool_response>" in text and text.rstrip().endswith("<answer>42</answer>")
    mask, ids = gen.loss_masks[0], gen.completion_ids[0]
    assert len(mask) == len(ids) == len(gen.logprobs[0]) and 0 in mask and mask[0] == 1 and mask[-1] == 1
    inserted = tok.decode([t for t, m in zip(ids, mask) if m == 0])
    assert inserted == results_text(tok, ["42"]) and "42" in inserted
    assert all(lp == 0.0 for lp, m in zip(gen.logprobs[0], mask) if m == 0)
    assert gen.finish_reasons == ["stop", "stop"]
    assert stats[0].turns == 2 and stats[0].tool_calls == 1 and stats[0].calls_per_tool == {"calculator": 1}
    m = episode_metrics(gen.episodes)
    assert m["tool_use_rate"] == 1.0 and m["tool_calls"] == 1.0 and m["tool_error_rate"] == 0.0
    assert m["episode_turns"] == 2.0 and m["tool_calls/calculator"] == 1.0


def test_episode_budgets_end_episodes_that_keep_calling(tiny):
    def forever(context, turn):
        return "again " + CALL % "1 + 1"

    _, engine, gen, stats = _episodes(tiny, forever, max_turns=3, max_tokens=10_000)
    assert [s.turns for s in stats] == [3, 3] and [s.tool_calls for s in stats] == [3, 3]
    assert gen.finish_reasons == ["length", "length"] and len(engine.calls) == 3
    _, engine, gen, stats = _episodes(tiny, forever, max_turns=50, max_tokens=120)
    assert all(len(ids) <= 120 for ids in gen.completion_ids) and gen.finish_reasons == ["length", "length"]
    assert all(s.turns < 50 for s in stats) and all(c[2] <= 120 for c in engine.calls)
    _, engine, gen, stats = _episodes(tiny, forever, turn_tokens=30, max_turns=5, max_tokens=10_000)
    assert [s.turns for s in stats] == [1, 1] and gen.finish_reasons == ["length", "length"]  # cut before the call
    assert all(len(ids) == 30 for ids in gen.completion_ids) and engine.calls[0][2] == 30


def _call_then_answer(tiny, call: str, answer: str):
    """An episode whose first turn is `call` and whose next turn is `answer`."""
    _, _, gen, stats = _episodes(tiny, lambda context, turn: call if "</tool_call>" not in context else answer,
                                 max_turns=3, max_tokens=400)
    return gen, stats


def test_a_malformed_call_gets_an_error_result_and_the_episode_goes_on(tiny):
    gen, stats = _call_then_answer(tiny, '<tool_call>{"name": "calculator", "arguments": </tool_call>',
                                   "<answer>sorry</answer>")
    assert "error: a tool call that is not JSON" in gen.texts[0] and gen.texts[0].rstrip().endswith("</answer>")
    assert stats[0].tool_calls == 1 and stats[0].tool_errors == 1 and stats[0].turns == 2
    assert episode_metrics(gen.episodes)["tool_error_rate"] == 1.0


def test_a_chat_template_with_a_tool_role_renders_the_results_as_a_tool_turn(tiny):
    _, tok = tiny

    class Templated:
        chat_template = "{% if message['role'] == 'tool' %}...{% endif %}"

        def apply_chat_template(self, msgs, tokenize=False, add_generation_prompt=False):
            body = "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in msgs)
            return body + ("<|assistant|>" if add_generation_prompt else "")

    assert results_text(Templated(), ["42", "error: bad call"]) == \
        "<|end|><|tool|>42<|end|><|tool|>error: bad call<|end|><|assistant|>"
    assert results_text(tok, ["42"]) == "\n<tool_response>\n42\n</tool_response>\n"  # no tool turns
    plain = type("Plain", (), {"chat_template": None})()
    assert results_text(plain, ["42", "error: bad"]) == \
        "\n<tool_response>\n42\n</tool_response>\n<tool_response>\nerror: bad\n</tool_response>\n"

    class Refusing(Templated):
        def apply_chat_template(self, msgs, **kw):
            raise ValueError("no tool role here")

    assert results_text(Refusing(), ["42"]) == "\n<tool_response>\n42\n</tool_response>\n"


def test_the_loss_ignores_the_tokens_a_tool_inserted(tmp_path):
    """Two steps whose completions differ only in a trailing inserted part (a tool's result, of
    another length and text) take the same update when that part is masked as inserted;
    counted as the model's own (no mask), the same tail changes the loss and the update. (A
    causal model's earlier log-probs cannot see the tail; the padded width moves the last bits.)"""
    from test_trainer_stages import FakeEngine, right, trainer

    def script(call, q, j):
        return right(q) if j % 2 else "no answer"

    def step(tail: str, masked: bool):
        class Engine(FakeEngine):
            def generate(self, prompt_ids, n, params):
                gen = super().generate(prompt_ids, n, params)
                extra = [self.tokenizer(tail, add_special_tokens=False)["input_ids"] for _ in gen.completion_ids]
                own = [len(c) for c in gen.completion_ids]
                gen.completion_ids = [c + e for c, e in zip(gen.completion_ids, extra)]
                gen.logprobs = [lp + [0.0] * len(e) for lp, e in zip(gen.logprobs, extra)]
                gen.loss_masks = [[1] * k + [0 if masked else 1] * len(e) for k, e in zip(own, extra)]
                return gen

        tr, _ = trainer(tmp_path / f"{len(tail)}-{masked}", script)
        tr.engine = Engine(tr.tokenizer, script)
        ro = tr.step(0)
        return ro.update, [p.detach().clone() for p in tr.model.parameters()]

    (ua, a), (ub, b) = step("<tool_response>1</tool_response>", True), \
        step("<tool_response>999 and more</tool_response>", True)
    assert ua["loss"] == pytest.approx(ub["loss"], rel=1e-6) and ua["grad_norm"] == pytest.approx(ub["grad_norm"], rel=1e-5)
    assert max((x - y).abs().max().item() for x, y in zip(a, b)) < 5e-5
    uc, c = step("<tool_response>999 and more</tool_response>", False)
    assert abs(uc["loss"] - ua["loss"]) > 0.05 and max((x - y).abs().max().item() for x, y in zip(a, c)) > 5e-4


def test_a_grpo_step_with_tools_trains_on_episodes_and_logs_their_metrics(tmp_path):
    """`tools:` in a recipe: the trainer samples episodes through its engine; odd samples call
    the calculator and then answer from its result, even ones answer nothing; the step trains
    on the model's tokens and logs turns, calls and the share of episodes that used a tool."""
    from test_trainer_stages import FakeEngine, trainer

    from r1.rollout.episodes import EpisodeEngine, with_tools
    from r1.trainers.steps import step_metrics

    def script(call, q, j):
        if call == 0:
            return CALL % q if j % 2 else "no answer"
        return f"</think><answer>{eval(q)}</answer>"

    from r1.config import build_config, read_yaml
    from r1.presets import preset_path
    from r1.trainers.grpo import GRPOTrainer

    real = GRPOTrainer(build_config(read_yaml(preset_path("tiny")), ["tools.names=[calculator]"]), tmp_path / "real")
    real.setup()
    assert isinstance(real.engine, EpisodeEngine) and real.engine.settings.tools["calculator"].name == "calculator"
    tr, _ = trainer(tmp_path, script, "tools.names=[calculator]", "tools.max_turns=3")
    tr.engine = with_tools(FakeEngine(tr.tokenizer, script), tr.tokenizer, tr.cfg.tools)
    ro = tr.step(0)
    gen = ro.generation
    assert gen.loss_masks is not None and len(gen.episodes) == ro.size
    called = [i for i in range(ro.size) if gen.episodes[i]["tool_calls"]]
    assert called == list(range(1, ro.size, 2))
    assert all(0 in gen.loss_masks[i] for i in called) and all(0 not in gen.loss_masks[i] for i in range(0, ro.size, 2))
    assert all(ro.rewards["accuracy"][i] == 1.0 for i in called) and ro.stepped
    row = step_metrics(1, ro, tr.task, tr.eos, 0.0, None)
    assert row["tool_use_rate"] == 0.5 and row["tool_calls/calculator"] == 0.5 and row["episode_turns"] == 1.5
    with pytest.raises(R1Error, match="unknown tool 'abacus'"):
        trainer(tmp_path / "bad", script, "tools.names=[abacus]")


def test_a_made_up_tool_name_is_an_error_result_counted_as_unknown(tiny):
    gen, stats = _call_then_answer(tiny, '<tool_call>{"name": "calculateFunction(466)", "arguments": {"x": 1}}'
                                         '</tool_call>', "<answer>1</answer>")
    assert "error: unknown tool 'calculateFunction(466)'; tools: calculator" in gen.texts[0]
    assert stats[0].calls_per_tool == {"unknown": 1} and stats[0].tool_errors == 1
    assert set(episode_metrics(gen.episodes)) == {"episode_turns", "tool_calls", "tool_error_rate", "tool_use_rate",
                                                  "tool_calls/unknown"}


def test_the_held_out_evaluation_through_an_engine_with_tools_reports_tool_use(tiny):
    from r1.data.prompts import PromptFormat
    from r1.data.tasks import get_task
    from r1.eval.heldout import evaluate
    from r1.rollout.episodes import EpisodeEngine

    model, tok = tiny

    def script(context, turn):
        if "</tool_call>" not in context:
            q = context.split("What is")[-1].split("?")[0]
            return "<think>" + CALL % q
        return " </think> <answer>" + context.split("<tool_response>\n")[-1].split("\n")[0] + "</answer>"

    task = get_task("arithmetic", {"max_value": 9})
    _, heldout = task.splits(0, 4)
    engine = EpisodeEngine(TextEngine(tok, script), tok, EpisodeSettings({"calculator": get_tool("calculator")}))
    out = evaluate(engine, PromptFormat(style="chat", template="{question}", force_think=False), tok, task, heldout,
                   samples=2, temperature=1.0, top_p=1.0, max_new_tokens=200, stop=("</answer>",), seed=0)
    assert out["pass@1"] == 1.0 and out["tool_use_rate"] == 1.0 and out["episode_turns"] == 2.0
    assert all(r["episode"]["tool_calls"] == 1 for r in out["rows"])


def test_an_evaluation_with_tools_runs_episodes_and_reports_their_figures(tiny, tmp_path):
    """`r1 eval` with tools: each sample an episode through the same engine wrapper as training,
    the answer read after the result, the episodes' figures in summary.json; without tools
    the same model's call is just text and its answer is missing."""
    from r1.data.prompts import PromptFormat
    from r1.data.tasks import build_task
    from r1.config import load_config, ToolsConfig
    from r1.eval.runner import EvalConfig, run_eval
    from r1.rollout.episodes import with_tools
    from r1.rollout.sampler import LocalSampler

    _, tok = tiny
    task = build_task(load_config(None, ["task.name=arithmetic", "task.params.min_value=100",
                                         "task.params.max_value=999"]))
    _, examples = task.splits(0, 6)

    def script(context, turn):  # call for the question's sum, then copy the result
        if "<tool_response>" in context:
            return "<answer>" + context.split("<tool_response>\n")[-1].split("\n")[0] + "</answer>"
        return CALL % context.split("What is ")[-1].split("?")[0]

    fmt = PromptFormat(force_think=False, template="{question}")
    cfg = EvalConfig(model="tiny", benchmark="sums", samples=2, max_new_tokens=200, fallback="task",
                     stop=["</answer>"], tools=ToolsConfig(names=["calculator"]))
    engine = with_tools(TextEngine(tok, script), tok, cfg.tools)
    result = run_eval(cfg, tmp_path / "tools", sampler=LocalSampler(engine, tok, fmt), task=task,
                      examples=examples, progress=False)
    m = result["metrics"]
    assert m["pass@1"] == 1.0 and m["tool_use_rate"] == 1.0 and m["episode_turns"] == 2.0
    assert m["tool_calls/calculator"] == 1.0 and m["tool_error_rate"] == 0.0
    rows = [json.loads(line) for line in (tmp_path / "tools" / "samples.jsonl").read_text().splitlines()]
    assert all(r["episode"]["tool_calls"] == 1 for r in rows) and "<tool_response>" in rows[0]["completion"]
    bare = run_eval(cfg.model_copy(update={"tools": None}), tmp_path / "bare", task=task, examples=examples,
                    sampler=LocalSampler(TextEngine(tok, script), tok, fmt), progress=False)["metrics"]
    assert bare["pass@1"] == 0.0 and "tool_use_rate" not in bare


def test_the_eval_tools_flag_names_tools_keeps_a_runs_settings_or_turns_them_off():
    from r1.cli.eval import _tools
    from r1.config import ToolsConfig

    run = ToolsConfig(names=["calculator"], max_turns=2, max_tokens=99)
    assert _tools(None, run) is run and _tools("none", run) is None and _tools(None, None) is None
    assert _tools("python, calculator", run) == {"names": ["python", "calculator"], "max_turns": 2, "max_tokens": 99,
                                                 "timeout_s": 10.0, "environment": None}
    with pytest.raises(R1Error, match="unknown tool 'abacus'"):
        _tools("abacus", None)
    with pytest.raises(R1Error, match="--tools needs tool names"):
        _tools(" , ", None)


def test_a_run_with_tools_reports_and_plots_its_tool_use(tmp_path):
    from r1.config import load_config
    from r1.report.run import write_run_report

    cfg = load_config(None, ["tools.names=[calculator]"])
    rows = [{"step": s, "reward": s / 4, "accuracy": s / 4, "format_rate": 0.0, "response_length_mean": 40.0,
             "tool_use_rate": s / 4, "tool_calls": s / 4, "tool_error_rate": 0.5 / s, "episode_turns": 1 + s / 4,
             **({"tool_calls/calculator": s / 4} if s > 1 else {})} for s in range(1, 5)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = {"pass@1": 0.1, "format_rate": 0.0, "lenient_pass@1": 0.1, "response_length_mean": 30.0,
            "reflection_rate": 0.0, "eos_rate": 1.0, "problems": 4, "episode_turns": 1.1, "tool_calls": 0.1,
            "tool_error_rate": 0.5, "tool_use_rate": 0.1}
    history = [{"step": 0, **base}, {"step": 4, **base, "pass@1": 0.9, "tool_use_rate": 1.0, "tool_calls": 1.0,
                                     "tool_error_rate": 0.0, "episode_turns": 2.0, "tool_calls/calculator": 1.0}]
    summary = write_run_report(tmp_path, cfg, history)
    assert summary["heldout_after"]["tool_use_rate"] == 1.0 and summary["heldout_before"]["tool_calls/calculator"] == 0.0
    report = (tmp_path / "report.md").read_text()
    assert "| after | 1.000 | 1.00 | 2.00 | 0.000 |" in report and "calculator 0.00 → 1.00" in report
    assert (tmp_path / "plots" / "tools.png").stat().st_size > 10_000


def test_an_environment_of_your_own_answers_each_turn(tiny, tmp_path):
    """A custom environment class (loaded like a custom tool) sees the prompt and every turn and
    decides what goes back and when the episode ends; its texts are masked out of the loss."""
    from r1.config import ToolsConfig
    from r1.rollout.episodes import with_tools

    (tmp_path / "env.py").write_text(
        "from r1.rollout.episodes import Observation\n"
        "class HigherLower:\n"
        "    def __init__(self, tools):\n"
        "        self.tools, self.target = tools, None\n"
        "    def reset(self, prompt):\n"
        "        self.target = int(prompt.split('between 1 and ')[1].split()[0]) // 2\n"
        "    def step(self, text):\n"
        "        guess = int(text.split('guess')[-1].split('<')[0])\n"
        "        if guess == self.target:\n"
        "            return Observation(done=True)\n"
        "        return Observation(['higher' if guess < self.target else 'lower'], calls={'judge': 1})\n")
    _, tok = tiny
    tried = []

    def script(context, turn):  # binary search over the answers the environment gives
        lo, hi = 1, 20
        for word in context.split("<tool_response>\n")[1:]:
            g = (lo + hi) // 2
            lo, hi = (g + 1, hi) if word.startswith("higher") else (lo, g - 1)
        tried.append((lo + hi) // 2)
        return f"guess {(lo + hi) // 2}<tool_call>{{}}</tool_call>"

    cfg = ToolsConfig(environment=f"{tmp_path / 'env.py'}:HigherLower", max_turns=6, max_tokens=2000)
    engine = with_tools(TextEngine(tok, script), tok, cfg)
    prompt = tok("Pick a number between 1 and 14 halved", add_special_tokens=False)["input_ids"]
    gen = engine.generate([prompt], 1, SamplingParams(max_new_tokens=100))
    assert tried == [10, 5, 7] and gen.episodes[0]["turns"] == 3 and gen.episodes[0]["calls_per_tool"] == {"judge": 2}
    inserted = tok.decode([t for t, m in zip(gen.completion_ids[0], gen.loss_masks[0]) if m == 0])
    assert "lower" in inserted and "higher" in inserted and "guess" not in inserted
    with pytest.raises(R1Error, match="environment"):
        with_tools(TextEngine(tok, script), tok, ToolsConfig(environment=f"{tmp_path / 'nope.py'}:X"))
    with pytest.raises(ValueError, match="names .* or an environment"):
        ToolsConfig()


def test_a_chat_template_that_renders_tools_gets_the_recipes_tools_in_every_prompt():
    from r1.config import PromptConfig, ToolsConfig
    from r1.data.prompts import PromptFormat
    from r1.models import build_tiny

    _, tok = build_tiny()
    tok.chat_template = ("{% if tools %}[tools:{% for t in tools %}{{ t.function.name }},{% endfor %}]{% endif %}"
                         "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    fmt = PromptFormat.resolve(PromptConfig(), tok, "x", (), ToolsConfig(names=["calculator", "python"]))
    assert fmt.render("Q", tok).text.startswith("[tools:calculator,python,]<|user|>Q")
    assert PromptFormat.resolve(PromptConfig(), tok, "x").render("Q", tok).text.startswith("<|user|>Q")
    saved = fmt.chat_template(tok)  # checked against render_turns, the tools given to both
    assert tok.apply_chat_template([{"role": "user", "content": "Q"}], chat_template=saved, tokenize=False,
                                   add_generation_prompt=True, tools=list(fmt.tools)) == fmt.render("Q", tok).text
