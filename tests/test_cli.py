"""Bad input: one clear line naming the problem, exit code 2, no traceback."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def r1(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "r1", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_help_is_fast():
    t0 = time.perf_counter()
    res = r1("--help")
    assert res.returncode == 0 and "zero" in res.stdout and "grpo" in res.stdout
    assert time.perf_counter() - t0 < 5  # generous here; the README reports the real figure


@pytest.mark.parametrize("args,message", [
    (["zero", "--preset", "tiny", "--set", "optim.lrr=1"], "unknown key 'optim.lrr'"),
    (["zero", "--preset", "tiny", "--set", "optim.lr=fast"], "optim.lr: Input should be a valid number"),
    (["zero", "--preset", "tiny", "--task", "sudoku"], "unknown task 'sudoku'"),
    (["zero", "--preset", "tiny", "--set", "rewards.vibes=1"], "unknown reward 'vibes'"),
    (["zero", "--preset", "huge"], "unknown preset 'huge'"),
    (["grpo", "no-such-recipe.yaml"], "recipe no-such-recipe.yaml does not exist"),
    (["filter", "samples.jsonl", "--min-language", "1.5"], "min_language: Input should be less than or equal to 1"),
    (["eval", "--model", "tiny", "--benchmark", "gsm8k", "--top-p", "0"], "top_p: Input should be greater than 0"),
])
def test_bad_input_exits_2_with_one_line(args, message, tmp_path):
    res = r1(*args, "--out", str(tmp_path / "out"))
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_missing_and_malformed_data_files(tmp_path):
    res = r1("zero", "--preset", "tiny", "--task", "gsm8k", "--set", f"task.params.path={tmp_path}/nope.jsonl",
             "--out", str(tmp_path / "o1"))
    assert res.returncode == 2 and "nope.jsonl does not exist" in res.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{"question": oops}\n')
    res = r1("zero", "--preset", "tiny", "--task", "gsm8k", "--set", f"task.params.path={bad}",
             "--out", str(tmp_path / "o2"))
    assert res.returncode == 2 and "bad.jsonl:2: malformed JSON" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_grpo_recipe_with_bad_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {name: tiny}\ntrain: {stepz: 3}\n")
    res = r1("grpo", str(recipe), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "unknown key 'train.stepz'" in res.stderr


def test_one_rule_for_api_keys_in_every_command(monkeypatch):
    """--api-key, else $R1_API_KEY, else $OPENAI_API_KEY: eval, generate and serve alike."""
    from r1.rollout.openai import APISampler, resolve_api_key

    monkeypatch.delenv("R1_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert resolve_api_key(None) is None
    monkeypatch.setenv("OPENAI_API_KEY", "openai")
    assert resolve_api_key(None) == "openai"
    monkeypatch.setenv("R1_API_KEY", "r1")
    assert resolve_api_key(None) == "r1" and resolve_api_key("flag") == "flag"
    assert APISampler("http://127.0.0.1:9", "m").client.api_key == "r1"
    for command in ("eval", "generate", "serve"):
        res = subprocess.run([sys.executable, "-m", "r1", command, "--help"], capture_output=True, text=True,
                             env={**os.environ, "COLUMNS": "200"})
        assert "--api-key" in res.stdout and "R1_API_KEY" in res.stdout, command


def test_eval_and_generate_derive_one_flag_per_sampling_setting():
    """Both commands take one flag per `SamplingSettings` field (the prompt's nested), defaulting
    to what `SamplingSettings()` holds, described as the field is; a new field becomes a flag of
    both without more code."""
    import inspect

    from r1.cli.eval import evaluate
    from r1.cli.main import generate
    from r1.config import PromptConfig
    from r1.rollout.sampler import SamplingSettings

    defaults = SamplingSettings().model_dump()
    expected = {n: (f.description, defaults[n] or None if n == "stop" else defaults[n])
                for n, f in SamplingSettings.model_fields.items() if n != "prompt"}
    expected |= {("force_think" if n == "force_think" else f"prompt_{n}"): (f.description, defaults["prompt"][n])
                 for n, f in PromptConfig.model_fields.items() if n != "examples"}  # a list: recipe files only
    assert defaults["prompt"] == {"style": "auto", "template": "{question}", "force_think": None, "examples": []}
    for command in (evaluate, generate):
        params = inspect.signature(command).parameters
        assert "sampling" not in params
        assert "prompt_examples" not in params
        for name, (description, default) in expected.items():
            opt = params[name].default
            assert (opt.default, opt.help) == (default, description), (command, name)


def test_a_sampling_flag_reaches_the_config(tmp_path, monkeypatch):
    """`r1 generate --temperature 1.3 --prompt-template ... --no-force-think --stop X --stop Y`
    arrives in `GenerateConfig` as those fields; a bad value is a one-line error naming it."""
    import r1.pipeline.generate as G

    seen = {}

    def fake_run(cfg, out, **kw):
        seen["cfg"] = cfg
        return {"samples": 0, "problems": 0}

    monkeypatch.setattr(G, "run_generate", fake_run)
    from r1.cli.main import app

    res = CliRunner().invoke(app, ["generate", "--model", "m", "--task", "arithmetic", "--temperature", "1.3",
                                   "--prompt-template", "Q: {question}", "--no-force-think", "--stop", "X",
                                   "--stop", "Y", "--engine", "vllm", "--out", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    cfg = seen["cfg"]
    assert (cfg.temperature, cfg.prompt.template, cfg.prompt.force_think, cfg.stop, cfg.engine) == \
        (1.3, "Q: {question}", False, ["X", "Y"], "vllm")
    assert cfg.top_p == G.GenerateConfig.model_fields["top_p"].default
    res = CliRunner().invoke(app, ["generate", "--model", "m", "--engine", "tgi", "--out", str(tmp_path / "h")])
    assert res.exit_code != 0 and "engine" in str(res.exception or res.output)


def test_default_out_is_runs_command_name():
    from r1.cli.options import default_out

    assert default_out("zero", "smollm2") == "runs/zero-smollm2"
    assert default_out("grpo", "recipes/r1-zero-gsm8k-qwen2.5-0.5b.yaml") == "runs/grpo-r1-zero-gsm8k-qwen2.5-0.5b"
    assert default_out("eval", "gsm8k", "runs/zero-smollm2/model") == "runs/eval-gsm8k-zero-smollm2"
    assert default_out("eval", "aime24", "Qwen/Qwen2.5-Math-1.5B") == "runs/eval-aime24-Qwen2.5-Math-1.5B"
    assert default_out("generate", "math", None) == "runs/generate-math"
