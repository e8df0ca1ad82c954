"""The model card of a trained model: `model/README.md` in the Hugging Face format (YAML front
matter, then the recipe, the held-out figures of the run that wrote it, the prompt format
and how to load the model in transformers, vLLM and llama.cpp)."""

from __future__ import annotations

from pathlib import Path

import yaml

# the base model of each alias, and its licence, for the card's front matter
KNOWN_BASES = {
    "smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
}


def _pct(h: dict, key: str) -> str:
    value, se = h.get(key), h.get(f"{key}_se")
    if value is None:
        return "–"
    return f"{100 * value:.1f}%" + (f" ± {100 * se:.1f}" if se is not None else "")


def model_card(cfg, summary: dict, run_name: str, example_prompt: str) -> str:
    """The card's text for a GRPO run (`cfg`: its `Config`; `summary`: its summary.json)."""
    name = cfg.model.name
    base, licence = KNOWN_BASES.get(name, (name if "/" in name and not Path(name).exists() else None, None))
    front = {"library_name": "transformers", "pipeline_tag": "text-generation",
             "tags": ["r1", "grpo", "reasoning", "deepseek-r1", f"task:{cfg.task.name}"]}
    if base:
        front["base_model"] = base
    if licence:
        front["license"] = licence
    dataset = (cfg.task.params or {}).get("dataset")
    if isinstance(dataset, str) and "/" in dataset:
        front["datasets"] = [dataset]
    before, after = summary.get("heldout_before") or {}, summary.get("heldout_after") or {}
    n, k = summary.get("heldout_problems", 0), summary.get("heldout_samples_per_problem", 0)
    rewards = ", ".join(f"{r} × {w}" for r, w in cfg.rewards.items())
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
        f"# {run_name}",
        "",
        f"{base or name}, trained by reinforcement learning with GRPO (as R1-Zero was) with "
        f"r1 on the `{cfg.task.name}` task.",
        "",
        "## Recipe",
        "",
        f"- {cfg.train.steps} GRPO steps, {cfg.rollout.prompts_per_step} prompts × {cfg.rollout.group_size} "
        f"completions a step, sampled at temperature {cfg.rollout.temperature}",
        f"- rewards: {rewards}",
        f"- learning rate {cfg.optim.lr}, KL weight {cfg.algorithm.beta}, clip {cfg.algorithm.clip_low}/"
        f"{cfg.algorithm.clip_high}, advantage `{cfg.algorithm.advantage}`, loss `{cfg.algorithm.loss_agg}`",
        f"- seed {cfg.seed}; the run's whole configuration is `config.yaml` beside this folder",
        "",
        f"## Held-out accuracy ({n} problems × {k} samples, temperature {cfg.eval.temperature}, "
        f"top-p {cfg.eval.top_p}; ± one standard error)",
        "",
        "| | pass@1 | strict format |",
        "|---|---|---|",
        f"| before training | {_pct(before, 'pass@1')} | {_pct(before, 'format_rate')} |",
        f"| after training | {_pct(after, 'pass@1')} | {_pct(after, 'format_rate')} |",
        "",
        "## Prompt format",
        "",
        "The chat template in this folder does what training did: it puts the user's question into "
        "the training prompt and opens the answer"
        + (" with `<think>`." if cfg.prompt.force_think else ".")
        + " The model answers `<think> reasoning </think> <answer> answer </answer>` and ends with "
        "its EOS token. A bare question, rendered by the chat template:",
        "",
        "```",
        example_prompt,
        "```",
        "",
        "## Use",
        "",
        "transformers:",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        'tok = AutoTokenizer.from_pretrained("PATH")',
        'model = AutoModelForCausalLM.from_pretrained("PATH")',
        'inputs = tok.apply_chat_template([{"role": "user", "content": "What is 12 + 30?"}],',
        '                                 add_generation_prompt=True, return_dict=True, return_tensors="pt")',
        "out = model.generate(**inputs, max_new_tokens=128)  # sampling settings: generation_config.json",
        'print(tok.decode(out[0, inputs["input_ids"].shape[1]:]))',
        "```",
        "",
        "vLLM: `vllm serve PATH" + (" --reasoning-parser deepseek_r1` (`<think>` and `</think>` are tokens of "
                                   "this model's own)" if cfg.model.think_tokens else "`") +
        ", then ask through any OpenAI client. llama.cpp and Ollama: `r1 export RUN --gguf` writes a GGUF "
        "file (llama.cpp's converter) that carries the chat template. r1 itself: `r1 serve --model PATH` "
        "(reasoning apart from the answer, as `reasoning_content`).",
        "",
    ]
    return "\n".join(lines)


def write_model_card(out: Path, cfg, summary: dict) -> None:
    """`out/model/README.md` for the GRPO run in `out` (nothing without a saved model)."""
    folder = Path(out) / "model"
    if not (folder / "config.json").is_file():
        return
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    example = tok.apply_chat_template([{"role": "user", "content": "What is 12 + 30?"}], tokenize=False,
                                      add_generation_prompt=True) if tok.chat_template else "What is 12 + 30?"
    (folder / "README.md").write_text(model_card(cfg, summary, Path(out).resolve().name, example))
