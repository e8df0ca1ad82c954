"""Every vLLM mode run for real, on vLLM's CPU build (`make test-vllm`: vllm-cpu in its own
virtual environment), on the embedded SmolLM2-135M: weights synced into a running engine
(tied embeddings included) equal the trainer's, `r1 eval`/`r1 generate`/`r1 serve` through
vLLM, and `r1 zero` with the colocated engine and with a vLLM server, where the log-prob
mismatch between the engine and the trainer shows that every update reached vLLM.

Skipped where vLLM is not installed (the default `make test` environment)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm")

ROOT = Path(__file__).resolve().parents[1]
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
           "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, sorted(os.sched_getaffinity(0)))),
           "VLLM_LOGGING_LEVEL": "WARNING"}
os.environ.update({k: os.environ.get(k, v) for k, v in CPU_ENV.items()})
# a small arithmetic task SmolLM2 can partly solve with the demo's prompt, so pass@1 is not 0;
# the cosine reward (graded by length) gives every group unequal rewards, so every step updates
# the weights whatever the CPU samples (CI's once drew a first step whose groups all tied)
ZERO = ["--steps", "3", "--set", "tracking.progress=false", "--set", "task.heldout_size=8",
        "--set", "rewards.cosine=0.2",
        "--set", "train.eval_every=0", "--set", "eval.samples=1", "--set", "rollout.enforce_eager=true",
        "--set", "optim.lr=1e-4", "--set", "optim.warmup_steps=0"]


def run(cmd: list[str], timeout: int = 900, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "r1", *cmd], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, **kw.pop("env", {})}, **kw)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def smollm2():
    from r1.models import load_model, resolve_path

    model, tok = load_model("smollm2-135m", device="cpu")
    return model, tok, resolve_path("smollm2-135m")


def teacher_forced(model, prompt: list[int], completion: list[int]):
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt + completion])).logits[0, len(prompt) - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None])[:, 0]


def test_weights_synced_into_colocated_vllm_equal_the_trainers(smollm2):
    """A changed trainer model (its tied embedding scaled, every other weight jittered),
    synced into a running vLLM: vLLM's greedy tokens and log-probs change, and equal the
    trainer's own within bf16 tolerance (the LM head follows the tied embedding)."""
    import torch

    from r1.rollout.vllm import VLLMEngine, sampling_weights
    from r1.types import SamplingParams

    model, tok, path = smollm2
    state = sampling_weights(model)
    assert "lm_head.weight" not in state and "model.embed_tokens.weight" in state  # tied: sent once
    assert all(v.dtype == torch.bfloat16 for v in sampling_weights(model, torch.bfloat16).values())
    engine = VLLMEngine(path, tok, sleep=True, enforce_eager=True)  # sleep: warned and off on a CPU
    text = tok.apply_chat_template([{"role": "user", "content": "What is 7 + 5?"}], tokenize=False,
                                   add_generation_prompt=True)
    prompt = tok(text, add_special_tokens=False).input_ids
    # the grace check samples after "7 + 5 =" written for the model, which goes on " 12" on every
    # row here, whatever this CPU's bf16 kernels sample (sampled freely from the question, only 2 of
    # 16 rows reached "=" on one CI machine, 10 here)
    _check_grace(engine, tok, tok(text + "7 + 5 =", add_special_tokens=False).input_ids)
    _check_episodes(engine, tok)
    greedy = SamplingParams(max_new_tokens=12, temperature=0.0)
    before = engine.generate([prompt], 1, greedy)
    ref = teacher_forced(model, prompt, before.completion_ids[0])
    # bf16 against fp32: a mean within 0.05 (the same bar as after the sync below; a missed sync
    # is > 0.3), single tokens within 0.25 (vLLM-cpu's bf16 kernels differ by CPU: 0.10 on one
    # machine of this kind, 0.15 on another, 2026-12-01)
    diff = (ref - torch.tensor(before.logprobs[0])).abs()
    assert diff.mean() < 0.05 and diff.max() < 0.25, diff
    changed = type(model).from_pretrained(path, torch_dtype=torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        changed.get_input_embeddings().weight.mul_(1.7)
        for name, p in changed.named_parameters():
            if "embed" not in name:
                p.add_(torch.randn_like(p) * 0.02 * p.abs().mean())
    engine.sync_weights(changed)
    after = engine.generate([prompt], 1, greedy)
    assert after.completion_ids[0] != before.completion_ids[0]
    ref_after = teacher_forced(changed, prompt, after.completion_ids[0])
    assert (ref_after - torch.tensor(after.logprobs[0])).abs().mean() < 0.05
    assert (teacher_forced(model, prompt, after.completion_ids[0]) - ref_after).abs().mean() > 0.3


def _check_grace(engine, tok, prompt: list[int]) -> None:
    """`stop_grace`: rows that hit the stop string go on for at most that many tokens (vLLM
    continues them in a second call), with the sampler's log-prob for every token."""
    from r1.types import SamplingParams

    gen = engine.generate([prompt], 16, SamplingParams(max_new_tokens=40, temperature=1.0, stop=("12",),
                                                      stop_grace=3, seed=3))
    hit = 0
    for ids, lps, text in zip(gen.completion_ids, gen.logprobs, gen.texts):
        assert len(lps) == len(ids) and all(math.isfinite(x) for x in lps)
        cut = next((i for i in range(1, len(ids) + 1) if "12" in tok.decode(ids[:i])), None)
        if cut is not None and cut < 40:
            hit += 1
            assert 1 <= len(ids) - cut <= 3, (len(ids), cut, text)  # grace tokens after the stop
            assert text.startswith(tok.decode(ids[:cut], skip_special_tokens=True))
    assert hit >= 12, hit  # after "7 + 5 =" the model writes " 12": most rows reach the stop string
    plain = engine.generate([prompt], 4, SamplingParams(max_new_tokens=40, temperature=1.0, stop=("12",), seed=3))
    assert all(t.endswith("12") for t, f in zip(plain.texts, plain.finish_reasons) if f == "stop" and "12" in t)


def _check_episodes(engine, tok) -> None:
    """Multi-turn episodes over vLLM: the embedded model, shown two calls as earlier turns, calls
    the calculator greedily; the result goes into its context (a later turn, on vLLM's prefix
    cache) and it answers with it; the inserted tokens are masked out of the loss."""
    from r1.data.prompts import PromptFormat
    from r1.data.tools import call_text, get_tool
    from r1.rollout.episodes import EpisodeSettings, run_episodes
    from r1.types import SamplingParams

    def shot(a: int, b: int) -> tuple[str, str]:
        return (f"What is {a} + {b}?", call_text("calculator", {"expression": f"{a} + {b}"})
                + f"\n<tool_response>\n{a + b}\n</tool_response>\n<answer> {a + b} </answer>")

    fmt = PromptFormat(template="{question}", force_think=False, examples=(shot(12, 7), shot(345, 218)))
    sums = [(788, 532), (317, 601), (259, 351)]
    prompts = [fmt.ids(f"What is {a} + {b}?", tok) for a, b in sums]
    gen, stats = run_episodes(engine, tok, prompts, 1, SamplingParams(max_new_tokens=64, temperature=0.0),
                              EpisodeSettings({"calculator": get_tool("calculator")}, max_turns=3, max_tokens=200))
    right = [f"<answer> {a + b} </answer>" in t for (a, b), t in zip(sums, gen.texts)]
    assert sum(s.calls_per_tool.get("calculator", 0) == 1 for s in stats) >= 2, gen.texts
    assert sum(right) >= 2, gen.texts
    for ids, mask, text, (a, b) in zip(gen.completion_ids, gen.loss_masks, gen.texts, sums):
        inserted = tok.decode([t for t, m in zip(ids, mask) if m == 0])
        assert len(mask) == len(ids) and (inserted.strip() == f"<tool_response>\n{a + b}\n</tool_response>"
                                          or "<tool_call>" not in text)


def _eval(engine: str, tmp: Path, extra=()) -> dict:
    out = tmp / f"eval-{engine}"
    run(["eval", "--model", "smollm2-135m", "--benchmark", "arithmetic", "--samples", "8", "--limit", "50",
         "--max-new-tokens", "48", "--engine", engine, "--out", str(out), "--no-progress", *extra])
    return json.loads((out / "summary.json").read_text())["metrics"]


def test_eval_through_vllm_equals_hf_within_sampling_noise(tmp_path):
    """One-digit sums, the answer taken as the last number (SmolLM2 gets some right): the
    same problems and settings through both engines agree within sampling noise."""
    hf = _eval("hf", tmp_path)
    vl = _eval("vllm", tmp_path, ["--enforce-eager"])
    n = 50 * 8
    se = math.sqrt(hf["pass@1"] * (1 - hf["pass@1"]) / n + vl["pass@1"] * (1 - vl["pass@1"]) / n)
    print(f"pass@1 hf {hf['pass@1']:.3f}, vllm {vl['pass@1']:.3f} (se {se:.3f})")
    assert max(hf["pass@1"], vl["pass@1"]) > 0.05  # a task where the comparison means something
    assert abs(hf["pass@1"] - vl["pass@1"]) <= 3 * se
    assert abs(hf["response_length_mean"] - vl["response_length_mean"]) < 0.25 * hf["response_length_mean"]


def test_generate_through_vllm(tmp_path):
    out = tmp_path / "traces"
    run(["generate", "--data", str(ROOT / "../shared/data/gsm8k_test.jsonl"), "--task", "gsm8k", "--limit", "3",
         "--samples", "2", "--max-new-tokens", "24", "--model", "smollm2-135m", "--engine", "vllm",
         "--enforce-eager", "--out", str(out)])
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["tokens"] > 0 and r["completion"] for r in rows)
    assert len({r["completion"] for r in rows}) > 1


def _mismatch(out: Path) -> list[float]:
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0 and "tis_weight_mean" in r
    return [r["logprob_mismatch_mean"] for r in rows]


def test_zero_colocated_vllm_three_steps_weights_reach_vllm(tmp_path, monkeypatch):
    """Three GRPO steps sampling from colocated vLLM (`r1 zero`, a real process; the preset adds
    `<think>`/`</think>` to the vocabulary, so vLLM starts from the policy's own weights). After each
    update the engine's log-probs of its own samples stay within bf16 noise of the
    trainer's (the update reached vLLM); the same run in-process with the engine's weight
    sync switched off shows what a missed sync looks like: the mismatch grows step by step."""
    from r1.config import build_config, read_yaml
    from r1.presets import preset_path
    from r1.rollout.vllm import VLLMEngine
    from r1.trainers.grpo import GRPOTrainer

    out = tmp_path / "zero-vllm"
    run(["zero", "--out", str(out), *ZERO, "--set", "rollout.engine=vllm"])
    synced = _mismatch(out)
    monkeypatch.setattr(VLLMEngine, "sync_weights", lambda self, model: None)
    overrides = [a for a in ZERO if a != "--set" and "=" in a] + ["rollout.engine=vllm", "train.steps=3"]
    no_sync = tmp_path / "zero-vllm-nosync"
    GRPOTrainer(build_config(read_yaml(preset_path("smollm2")), overrides), no_sync).train()
    stale = _mismatch(no_sync)
    print(f"mismatch synced {synced}, without sync {stale}")
    assert max(synced) < 0.05
    assert stale[2] > 2 * synced[2] and stale[2] > stale[0]


@pytest.fixture()
def vllm_server(smollm2, tmp_path):
    from serve_support import free_port, wait_healthy

    from r1.models import bf16_available

    _, _, path = smollm2
    port = free_port()
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1"}
    log = open(tmp_path / "vllm-server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path,
                             "--port", str(port), "--enforce-eager", "--max-num-batched-tokens", "16384",
                             "--worker-extension-cls", "r1.rollout.vllm.WorkerExtension", "--seed", "0",
                             "--logprobs-mode", "processed_logprobs",
                             # the trainer's precision (bf16 only where the CPU has it), as a user starts it
                             "--dtype", "bfloat16" if bf16_available("cpu") else "float32"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, 300, log=lambda: (tmp_path / "vllm-server.log").read_text()[-3000:])
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_zero_with_a_vllm_server_three_steps(vllm_server, tmp_path):
    """GRPO sampling from a vLLM server started on SmolLM2 as it ships: the policy keeps that
    vocabulary (model.think_tokens=false) so that its weights fit the server's model."""
    out = tmp_path / "zero-server"
    run(["zero", "--out", str(out), *ZERO, "--set", "model.think_tokens=false", "--set", "rollout.engine=vllm-server",
         "--set", f"rollout.vllm_server_url={vllm_server}", "--set", f"rollout.vllm_weights_dir={tmp_path / 'w'}"])
    mismatch = _mismatch(out)
    print(f"mismatch with the server {mismatch}")
    assert max(mismatch) < 0.05


def test_serve_through_vllm_with_the_openai_client(smollm2):
    import openai

    from r1.serve.app import ServeSettings, create_app
    from r1.serve.launch import BackgroundServer
    from r1.serve.vllm_engine import VLLMServeEngine

    _, _, path = smollm2
    engine = VLLMServeEngine(path, model_name="smollm2", enforce_eager=True)
    with BackgroundServer(create_app(engine, ServeSettings(model_name="smollm2")), engine=engine) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=120)
        r = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                      temperature=0, max_tokens=32, logprobs=True, top_logprobs=2)
        assert r.choices[0].message.reasoning_content and r.choices[0].finish_reason in ("stop", "length")
        assert len(r.choices[0].logprobs.content) == r.usage.completion_tokens
        chunks = list(c.chat.completions.create(model="smollm2", stream=True, temperature=0, max_tokens=32,
                                                messages=[{"role": "user", "content": "What is 2 + 3?"}]))
        streamed = "".join(ch.choices[0].delta.reasoning_content or "" for ch in chunks if ch.choices)
        assert streamed.strip() == r.choices[0].message.reasoning_content.strip()


SUMS = [(2, 3), (4, 1), (7, 5), (6, 8), (9, 9), (3, 4), (1, 1), (8, 2)]


def answering_smollm2(out: Path, steps: int = 24) -> Path:
    """SmolLM2-135M taught by `r1 sft` (with model.think_tokens) to answer SUMS in R1's format,
    "{a} + {b} = {c}\\n</think>\\n<answer>{c}</answer>" after the `<think>` opening its saved
    chat template writes: a model folder as r1 writes them, with answers that can be checked."""
    from r1.config import PromptConfig, build_sft_config
    from r1.data.prompts import PromptFormat
    from r1.trainers.sft import SFTTrainer

    data = out / "sums.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {a} + {b}?", "completion":
                                        f"<think>\n{a} + {b} = {a + b}\n</think>\n<answer>{a + b}</answer>"}) + "\n"
                            for a, b in SUMS))
    cfg = build_sft_config({"model": {"name": "smollm2-135m", "think_tokens": True}, "data": {"path": str(data)},
                            "train": {"steps": steps, "max_length": 128, "save_every": 1000},
                            "optim": {"lr": 3e-4, "micro_batch_size": 8, "warmup_steps": 0},
                            "tracking": {"progress": False}})
    spec = PromptConfig(style="chat", template="{question}", force_think=True)
    SFTTrainer(cfg, out / "sft", prompt_for=lambda tok: PromptFormat.resolve(spec, tok)).train()
    return out / "sft" / "model"


def test_vllms_r1_reasoning_parser_serves_a_model_r1_wrote(tmp_path):
    """vLLM's own OpenAI server with `--reasoning-parser deepseek_r1` starts on a model folder r1
    wrote (the parser needs `<think>`/`</think>` as tokens), prompts bare questions through the
    folder's chat template, and the openai client gets the thinking in the reasoning field and
    the answer in `content`, streamed (where vLLM finds the end of the thinking by its token id)
    and not."""
    import openai

    from serve_support import free_port, wait_healthy

    folder = answering_smollm2(tmp_path)
    port = free_port()
    log = open(tmp_path / "vllm-server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
                             "--served-model-name", "r1-sums", "--reasoning-parser", "deepseek_r1", "--port", str(port),
                             "--enforce-eager", "--seed", "0", "--max-model-len", "1024"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, 300, log=lambda: (tmp_path / "vllm-server.log").read_text()[-3000:])
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)

        def reasoning(message) -> str | None:  # vLLM 0.32 names the field `reasoning`
            return getattr(message, "reasoning", None) or getattr(message, "reasoning_content", None)

        for a, b in SUMS[:4]:
            messages = [{"role": "user", "content": f"What is {a} + {b}?"}]
            r = client.chat.completions.create(model="r1-sums", messages=messages, temperature=0, max_tokens=32,
                                               logprobs=True)
            msg = r.choices[0].message
            assert (reasoning(msg) or "").strip() == f"{a} + {b} = {a + b}", msg
            assert (msg.content or "").strip() == f"<answer>{a + b}</answer>", msg
            assert "</think>" in [t.token for t in r.choices[0].logprobs.content]  # one token of its own
            chunks = list(client.chat.completions.create(model="r1-sums", messages=messages, temperature=0,
                                                         max_tokens=32, stream=True))
            deltas = [ch.choices[0].delta for ch in chunks if ch.choices]
            assert "".join(reasoning(d) or "" for d in deltas).strip() == f"{a} + {b} = {a + b}"
            assert "".join(d.content or "" for d in deltas).strip() == f"<answer>{a + b}</answer>"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
