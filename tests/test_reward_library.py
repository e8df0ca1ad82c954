"""The reward library beyond accuracy/format: language consistency, shaping, the reward
model, custom rewards, HumanEval through the sandbox, and math-verify on hostile input."""

import json
import time
from pathlib import Path

import pytest
import torch

from r1.data.tasks.base import Example
from r1.rewards import registry
from r1.rewards.language import language_consistency, words
from r1.rewards.shaping import cosine_scaled, ngram_repetition, overlong_penalty, reasoning_steps

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# ----------------------------------------------------------------------------- language
@pytest.mark.parametrize("text,target,expected", [
    ("Let me add the two numbers first, then check the result.", "en", 1.0),
    ("我们先把两个数相加，然后检查结果。", "zh", 1.0),
    ("我们先把两个数相加，然后检查结果。", "en", 0.0),
    ("Let me add 我们先 then check", "en", 5 / 8),  # Let me add then check | 我 们 先
    ("Let me add 我们先 then check", "zh", 3 / 8),
    ("So x = 3 and $\\frac{a}{b}$ gives 12.5, 所以答案是", "zh", 5 / 8),  # x, a, b, \\frac are not words
    ("Дважды два — четыре", "ru", 1.0),
    ("Дважды два — четыре", "en", 0.0),
    ("かな漢字", "ja", 1.0),  # Han next to kana is Japanese
    ("かな漢字", "zh", 0.0),
    ("2 + 2 = 4", "en", 1.0),  # no words at all: nothing inconsistent
])
def test_language_consistency_golden(text, target, expected):
    assert language_consistency(text, target) == pytest.approx(expected)


def test_latin_script_languages_are_told_apart_by_sentence():
    pytest.importorskip("py3langid")
    mixed = "Let me add the numbers. Ensuite nous vérifions le résultat avec soin."
    assert language_consistency(mixed, "en") == pytest.approx(5 / 12)  # 5 English words of 12
    assert language_consistency(mixed, "fr") == pytest.approx(7 / 12)
    assert language_consistency("Let me add the numbers and then check the result.", "en") == 1.0


def test_language_words_are_split_by_script():
    assert words("abc 汉字 x Ωμέγα") == [("abc", "LATIN"), ("汉", "HAN"), ("字", "HAN"), ("Ωμέγα", "GREEK")]


def test_language_reward_reads_the_reasoning():
    fn = registry.get_reward("language")
    out = registry._bind(fn, {"target": "zh"}, {})(
        ["<think>我们先算一下</think> <answer>The answer is 4</answer>", "<think>first add</think> 4"], [None, None], None)
    assert out == [1.0, 0.0]


# ----------------------------------------------------------------------------- shaping
def test_cosine_scaling_golden():
    assert cosine_scaled(0, True, 100) == pytest.approx(1.0)
    assert cosine_scaled(100, True, 100) == pytest.approx(0.5)
    assert cosine_scaled(50, True, 100) == pytest.approx(0.75)
    assert cosine_scaled(0, False, 100) == pytest.approx(-1.0)
    assert cosine_scaled(100, False, 100) == pytest.approx(-0.5)
    assert cosine_scaled(500, False, 100) == pytest.approx(-0.5)  # past max_len counts as max_len
    assert cosine_scaled(25, True, 100) > cosine_scaled(75, True, 100)  # shorter right answers earn more
    assert cosine_scaled(25, False, 100) < cosine_scaled(75, False, 100)  # longer wrong ones lose less


def test_overlong_penalty_golden():
    # max 100, cache 20: free up to 80, linear to -1 at 100, -1 beyond
    assert [overlong_penalty(n, 100, 20) for n in (10, 80, 85, 90, 100, 101)] == \
        pytest.approx([0.0, 0.0, -0.25, -0.5, -1.0, -1.0])


def test_ngram_repetition_golden():
    assert ngram_repetition("the cat sat on the mat", 3) == 0.0
    assert ngram_repetition("a b c a b c a b c", 3) == pytest.approx(1 - 3 / 7)
    assert ngram_repetition("short", 3) == 0.0


def test_reasoning_steps_golden():
    text = "Step 1: add.\nStep 2: check.\n1. list\n- bullet\nFirst, we look. Finally, done."
    assert reasoning_steps(text) == 6
    assert reasoning_steps("The answer is 4.") == 0


def test_shaping_rewards_through_the_registry():
    from r1.data.tasks import get_task

    task = get_task("arithmetic", {})
    ex = Example("1", "2+2", "4")
    comps = ["<answer>4</answer>", "<answer>5</answer>"]
    per, total, failures = registry.score(
        comps, [ex, ex], task, {"cosine": 1.0, "overlong": 1.0, "repetition": 1.0, "reasoning_steps": 1.0},
        params={"overlong": {"cache_len": 4}}, lengths=[5, 9], max_tokens=10)
    assert failures.total == 0
    assert per["cosine"] == pytest.approx([cosine_scaled(5, True, 10), cosine_scaled(9, False, 10)])
    assert per["overlong"] == pytest.approx([0.0, -0.75])
    assert per["repetition"] == [0.0, 0.0] and per["reasoning_steps"] == [0.0, 0.0]
    assert total == pytest.approx([a + b for a, b in zip(per["cosine"], per["overlong"])])


# ----------------------------------------------------------------------------- custom rewards
def test_custom_reward_from_a_file_trains(tmp_path):
    from r1.config import build_config, read_yaml
    from r1.presets import preset_path
    from r1.trainers.grpo import GRPOTrainer

    (tmp_path / "mine.py").write_text(
        "def has_digit(completions, examples, task, bonus=1.0):\n"
        "    return [bonus * any(ch.isdigit() for ch in c) for c in completions]\n")
    spec = f"{tmp_path / 'mine.py'}:has_digit"
    cfg = build_config(read_yaml(preset_path("tiny")), [
        "tracking.progress=false", "train.steps=1", f"rewards.{spec}=1.0", f"reward_params.{spec}.bonus=3"])
    GRPOTrainer(cfg, tmp_path / "run").train()
    rows = [json.loads(x) for x in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()]
    assert rows
    for r in rows:  # the file's function ran with its parameter, on every completion
        assert r[f"rewards/{spec}"] == 3.0 * any(ch.isdigit() for ch in r["completion"])


def test_custom_reward_errors_name_the_problem(tmp_path):
    from r1.errors import R1Error

    (tmp_path / "bad.py").write_text("x = 1\n")
    with pytest.raises(R1Error, match="has no function 'nope'"):
        registry.get_reward(f"{tmp_path / 'bad.py'}:nope")
    with pytest.raises(R1Error, match="no such file"):
        registry.get_reward(f"{tmp_path / 'missing.py'}:f")
    (tmp_path / "broken.py").write_text("def f(:\n")
    with pytest.raises(R1Error, match="importing .* failed: SyntaxError"):
        registry.get_reward(f"{tmp_path / 'broken.py'}:f")


# ----------------------------------------------------------------------------- reward model
@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    """A tiny Llama sequence classifier (random init, fixed seed) saved as a folder."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from r1.models import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)
    model = LlamaForSequenceClassification(cfg)
    path = tmp_path_factory.mktemp("rm")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path), model, tok


def test_reward_model_scores_match_one_by_one_forward(tiny_rm):
    from r1.rewards.model import render_pair, score_pairs

    path, model, tok = tiny_rm
    prompts = ["What is 2+2?", "Name a colour."]
    comps = ["It is 4.", "Blue, or perhaps a much longer answer about green and red."]
    batched = score_pairs(path, prompts, comps, batch_size=2)
    model.eval()
    for p, c, got in zip(prompts, comps, batched):
        ids = tok(render_pair(tok, p, c), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            want = model(**ids).logits[0, 0].item()
        assert got == pytest.approx(want, abs=1e-4)  # padding in the batch changes nothing
    assert batched[0] != batched[1]


def test_reward_model_reward_in_a_recipe(tiny_rm):
    from r1.config import build_config, read_yaml
    from r1.presets import preset_path

    path, _, _ = tiny_rm
    cfg = build_config(read_yaml(preset_path("tiny")), ["rewards.reward_model=1.0", f"reward_params.reward_model.path={path}"])
    ex = Example("1", "What is 2+2?", "4")
    per, _, failures = registry.score(["It is 4.", "five"], [ex, ex], None, {"reward_model": 1.0}, cfg.reward_params)
    assert failures.total == 0 and len(per["reward_model"]) == 2 and per["reward_model"][0] != per["reward_model"][1]


# ----------------------------------------------------------------------------- HumanEval
@pytest.fixture(scope="module")
def humaneval():
    path = DATA / "humaneval.jsonl"
    if not path.exists():
        pytest.skip("../shared/data/humaneval.jsonl is not here")
    from r1.data.tasks import get_task

    task = get_task("humaneval", {"path": str(path)})
    return task, task.all_examples()


def test_humaneval_canonical_solutions_pass_and_broken_ones_fail(humaneval):
    task, examples = humaneval
    assert len(examples) == 164
    t0 = time.perf_counter()
    good = task.verify_batch([ex.meta["prompt"] + ex.answer for ex in examples], examples)
    seconds = time.perf_counter() - t0
    print(f"\nHumanEval: {sum(good)}/164 canonical solutions pass, {164 / seconds:.1f} executions/s")
    assert all(good), [ex.id for ex, ok in zip(examples, good) if not ok]
    broken = [ex.meta["prompt"] + "    return None\n" for ex in examples[:20]]
    assert not any(task.verify_batch(broken, examples[:20]))


def test_humaneval_reward_reads_the_last_code_block(humaneval):
    task, examples = humaneval
    ex = examples[0]
    good = f"<think>easy</think> <answer>```python\n{ex.meta['prompt']}{ex.answer}```</answer>"
    wrong = "<think>hmm</think> <answer>```python\ndef has_close_elements(numbers, threshold):\n    return False\n```</answer>"
    none = "<think>hmm</think> <answer>no code</answer>"
    per, _, _ = registry.score([good, wrong, none], [ex] * 3, task, {"accuracy": 1.0, "code": 1.0})
    assert per["accuracy"] == per["code"] == [1.0, 0.0, 0.0]


def test_stdin_stdout_cases_score_the_fraction_passed():
    from r1.rewards.code import code_fraction_reward, code_reward

    ex = Example("io", "add two integers", "", meta={"io_tests": [
        {"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6"},
        {"input": "0 0", "output": "0  \n"}, {"input": "-1 -1", "output": "-2"}]})
    right = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    half = "```python\na, b = map(int, input().split())\nprint(abs(a) + abs(b))\n```"  # wrong on negatives
    crash = "```python\nraise SystemExit(1)\n```"
    assert code_fraction_reward([right, half, crash, "no code"], [ex] * 4) == [1.0, 0.5, 0.0, 0.0]
    assert code_reward([right, half], [ex] * 2) == [1.0, 0.0]


def test_the_last_python_block_is_the_answer():
    from r1.rewards.code import extract_code

    text = "```python\nold()\n```\nthen\n```bash\nls\n```\n```py\nnew()\n```"
    assert extract_code(text) == "new()\n"
    assert extract_code("```\nplain()\n```") == "plain()\n"
    assert extract_code("no code at all") is None


# ----------------------------------------------------------------------------- math-verify
@pytest.mark.parametrize("prediction", [
    "9^{9^{9^{9^{9^{9}}}}}",
    "10**10**10**10",
    "\\frac{1}{\\frac{1}{\\frac{1}{\\frac{1}{\\frac{1}{\\frac{1}{2}}}}}}" * 20,
    "(" * 500 + "1" + ")" * 500,
    "2^{2^{2^{2^{2^{2^{2^{2}}}}}}}!",
])
def test_math_verify_returns_on_pathological_input(prediction):
    from r1.rewards.accuracy import answers_match

    t0 = time.perf_counter()
    assert answers_match("42", prediction) is False
    assert time.perf_counter() - t0 < 15
