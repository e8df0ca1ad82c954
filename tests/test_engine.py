"""The transformers rollout engine on the offline tiny model."""

import sys
from pathlib import Path

import pytest
import torch
from engine_support import same_samples_across_a_sync

from r1.rollout.base import RolloutEngine
from r1.rollout.hf import HFEngine
from r1.rollout.kvcache import with_cache
from r1.rollout.sampling import sample_tokens
from r1.trainers.policy import completion_logprobs, pad_batch
from r1.types import SamplingParams


@pytest.fixture(scope="module")
def engine(tiny):
    model, tok = tiny
    return HFEngine(model, tok, bf16=False)


def _prompts(tok):
    return [tok("What is 1 + 2?", add_special_tokens=False)["input_ids"],
            tok("Hi", add_special_tokens=False)["input_ids"]]


def test_protocol_shapes_and_grouping(engine, tiny):
    _, tok = tiny
    assert isinstance(engine, RolloutEngine)
    gen = engine.generate(_prompts(tok), 3, SamplingParams(max_new_tokens=12, temperature=1.0, seed=1))
    assert len(gen.completion_ids) == len(gen.logprobs) == len(gen.finish_reasons) == len(gen.texts) == 6
    for ids, lps, fin in zip(gen.completion_ids, gen.logprobs, gen.finish_reasons):
        assert 1 <= len(ids) <= 12 and len(ids) == len(lps)
        assert all(lp <= 0 for lp in lps)
        assert fin in ("stop", "length")
        assert (len(ids) == 12) or fin == "stop"


def test_seeded_sampling_is_deterministic(engine, tiny):
    _, tok = tiny
    p = SamplingParams(max_new_tokens=10, temperature=1.0, seed=5)
    a = engine.generate(_prompts(tok), 2, p).completion_ids
    b = engine.generate(_prompts(tok), 2, p).completion_ids
    c = engine.generate(_prompts(tok), 2, SamplingParams(max_new_tokens=10, temperature=1.0, seed=6)).completion_ids
    assert a == b and a != c


def _assert_logprobs_match_teacher_forcing(model, tok, prompts, gen, n, temperature):
    rows_p = [prompts[i // n] for i in range(len(prompts) * n)]
    ids, attn, cmask = pad_batch(rows_p, gen.completion_ids, tok.pad_token_id)
    with torch.no_grad():
        lp, _ = completion_logprobs(model, ids, attn, cmask.shape[1], temperature=temperature)
    for i, seq in enumerate(gen.logprobs):
        assert lp[i, : len(seq)].tolist() == pytest.approx(seq, abs=1e-4)


def test_sampling_logprobs_match_the_trainer_forward(engine, tiny):
    """The logprobs recorded while sampling equal a fresh teacher-forced forward pass (fp32)."""
    model, tok = tiny
    prompts = _prompts(tok)
    gen = engine.generate(prompts, 2, SamplingParams(max_new_tokens=8, temperature=0.7, stop=(), seed=3))
    _assert_logprobs_match_teacher_forcing(model, tok, prompts, gen, 2, 0.7)


def test_greedy_matches_hf_generate(engine, tiny):
    model, tok = tiny
    prompts = _prompts(tok)
    gen = engine.generate(prompts, 1, SamplingParams(max_new_tokens=8, temperature=0.0, stop=()))
    for p, ours in zip(prompts, gen.completion_ids):
        out = model.generate(torch.tensor([p]), max_new_tokens=8, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        assert out[0, len(p):].tolist()[: len(ours)] == ours


def _scripted_engine(tiny, script: list[int]) -> HFEngine:
    """An engine whose model always prefers the next token of `script` (then its last)."""
    model, tok = tiny

    class Scripted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model
            self.config = model.config
            self.generation_config = model.generation_config
            self.t = 0

        def forward(self, input_ids, cache=None, **kw):
            out = self.inner(input_ids=input_ids, **with_cache(model, cache), **kw)
            logits = torch.full_like(out.logits[:, -1:, :], -1e4)
            logits[:, :, script[min(self.t, len(script) - 1)]] = 0
            self.t += 1
            out.logits = logits
            return out

    scripted = Scripted()
    eng = HFEngine(scripted, tok, bf16=False)
    eng.model = scripted
    return eng


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_stop_string_ends_the_row(tiny):
    _, tok = tiny
    eng = _scripted_engine(tiny, _ids(tok, "ab</answer>zzzz"))
    gen = eng.generate([[5, 6]], 1, SamplingParams(max_new_tokens=20, temperature=0.0))
    assert gen.texts[0] == "ab</answer>"
    assert gen.finish_reasons[0] == "stop"


def test_after_a_stop_string_the_model_may_end_with_eos_itself(tiny):
    _, tok = tiny
    script = _ids(tok, "ab</answer>\n") + [tok.eos_token_id]
    gen = _scripted_engine(tiny, script).generate(
        [[5, 6]], 1, SamplingParams(max_new_tokens=30, temperature=0.0, stop_grace=4))
    assert gen.completion_ids[0] == script  # EOS sampled, so it is trained on
    assert gen.texts[0] == "ab</answer>\n" and gen.finish_reasons[0] == "stop"
    assert len(gen.logprobs[0]) == len(script)


def test_what_the_model_writes_after_the_stop_string_is_kept_and_fails_the_format(tiny):
    from r1.data.prompts import is_strict_format

    _, tok = tiny
    gen = _scripted_engine(tiny, _ids(tok, "<think>x</think><answer>1</answer>zzzzzz")).generate(
        [[5, 6]], 1, SamplingParams(max_new_tokens=40, temperature=0.0, stop_grace=3))
    assert gen.texts[0] == "<think>x</think><answer>1</answer>zzz"  # three tokens of grace, then cut
    assert gen.finish_reasons[0] == "stop" and not is_strict_format(gen.texts[0])
    # a special token that is not EOS stays visible (it would read as a clean end if skipped)
    special = next(i for i in tok.all_special_ids if i != tok.eos_token_id)
    gen = _scripted_engine(tiny, _ids(tok, "<think>x</think><answer>1</answer>") + [special]).generate(
        [[5, 6]], 1, SamplingParams(max_new_tokens=40, temperature=0.0, stop_grace=2))
    assert gen.texts[0] == "<think>x</think><answer>1</answer>" + 2 * tok.convert_ids_to_tokens(special)
    assert not is_strict_format(gen.texts[0])


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.05]]))
    g = torch.Generator().manual_seed(0)
    seen = {sample_tokens(logits, 1.0, 0.8, g)[0].item() for _ in range(200)}
    assert seen == {0, 1}
    tok, lp = sample_tokens(logits, 0.0, 1.0, g)
    assert tok.item() == 0 and lp.item() == pytest.approx(torch.log(torch.tensor(0.6)).item(), abs=1e-6)


def test_sync_weights_copies_the_policy(tiny):
    import copy

    model, tok = tiny
    policy = copy.deepcopy(model)
    eng = HFEngine(policy, tok, bf16=True)
    assert next(eng.model.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)
    eng.sync_weights(policy)
    for (n, a), (_, b) in zip(policy.named_parameters(), eng.model.named_parameters()):
        assert torch.allclose(a.to(torch.bfloat16), b), n


def test_ignore_eos_gives_fixed_lengths(engine, tiny):
    _, tok = tiny
    gen = engine.generate(_prompts(tok), 2, SamplingParams(max_new_tokens=9, temperature=1.0, ignore_eos=True))
    assert [len(c) for c in gen.completion_ids] == [9] * 4
    assert gen.finish_reasons == ["length"] * 4


def test_inverse_cdf_sampling_follows_the_distribution():
    """Frequencies of 20k draws match softmax(logits / T) (the exact sampler, not an approximation)."""
    probs = torch.tensor([0.5, 0.25, 0.15, 0.1, 0.0])
    logits = torch.log(probs + 1e-30).repeat(4000, 1)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(5)
    for _ in range(5):
        tokens, lps = sample_tokens(logits, 1.0, 1.0, g)
        counts += torch.bincount(tokens, minlength=5).float()
    freq = counts / counts.sum()
    assert freq[4] == 0  # a zero-probability token is never drawn
    assert torch.allclose(freq, probs, atol=0.012), freq
    assert torch.allclose(lps.exp(), probs[tokens], atol=1e-5)


def test_two_level_inverse_cdf_over_a_large_vocabulary():
    """Past 1,024 columns the draw finds its block of 256 first, then the column inside it:
    the frequencies still follow the weights, in full blocks and in the short last one, and a
    zero weight is never drawn, even next to the mass or at a block's edge."""
    n = 256 * 5 + 37
    probs = torch.zeros(n)
    heavy = {3: 0.3, 255: 0.2, 256: 0.1, 700: 0.15, n - 37: 0.05, n - 1: 0.2}
    for i, p in heavy.items():
        probs[i] = p
    g = torch.Generator().manual_seed(0)
    logits = torch.log(probs + 1e-38).repeat(5000, 1)  # exp(log(1e-38)) underflows to 0 in the draw's weights
    counts = torch.zeros(n)
    for _ in range(4):
        tokens, lps = sample_tokens(logits, 1.0, 1.0, g)
        counts += torch.bincount(tokens, minlength=n).float()
    freq = counts / counts.sum()
    assert set(torch.nonzero(counts)[:, 0].tolist()) <= set(heavy)
    for i, p in heavy.items():
        assert abs(freq[i].item() - p) < 0.012, (i, freq[i].item(), p)
    assert torch.allclose(lps.exp(), probs[tokens], atol=1e-5)
    # uniforms at the top of [0, 1): the two levels' sums round differently, and the draw must
    # then stay on the block's last non-zero weight, not run into the zeros after it (4,096
    # random rows of weights that end at column 300: without that guard 2 of them would)
    from r1.rollout.sampling import _inverse_cdf

    w = torch.rand(4096, n, generator=torch.Generator().manual_seed(0)) ** 8
    w[:, 300:] = 0
    drawn = _inverse_cdf(w, None, torch.full((4096,), 1 - 2**-24))
    assert drawn.max().item() < 300 and bool((w.gather(1, drawn[:, None]) > 0).all())
    assert _inverse_cdf(w[:2], None, torch.zeros(2)).tolist() == [0, 0]


def test_nucleus_grows_past_the_first_top_k():
    """A flat distribution over 1000 tokens: the 0.5 nucleus holds 500 of them, more than the
    first top-64 prefix; all draws fall inside it and cover far more than 64 tokens."""
    logits = torch.zeros(200, 1000)
    logits[:, 500:] = -3.0  # tokens 0..499 hold ~95% of the mass, each ~0.19%
    g = torch.Generator().manual_seed(1)
    seen = set()
    for _ in range(20):
        seen.update(sample_tokens(logits, 1.0, 0.5, g)[0].tolist())
    assert max(seen) < 500 and len(seen) > 200


def test_a_cpu_without_bf16_packing_samples_bf16_through_the_plain_path(tiny, monkeypatch):
    """On a CPU whose oneDNN cannot pack bf16 weights (AVX2 alone: the packing call raises),
    a bf16 engine samples through the model's own linears, as with pack_weights=False."""
    import copy

    from r1.rollout import kernels

    model, tok = tiny
    monkeypatch.setattr(kernels, "cpu_packs_bf16", lambda: False)
    engine = HFEngine(copy.deepcopy(model), tok, bf16=True)
    assert not kernels.packed_linear_available(engine.model) and not engine._packed
    plain = HFEngine(copy.deepcopy(model), tok, bf16=True, pack_weights=False)
    p = SamplingParams(max_new_tokens=8, temperature=1.0, seed=3, stop=())
    a, b = engine.generate(_prompts(tok), 2, p), plain.generate(_prompts(tok), 2, p)
    assert a.completion_ids == b.completion_ids and a.logprobs == b.logprobs


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_packed_bf16_engine_gives_the_same_tokens(tiny):
    """Prepacked oneDNN weights change the speed, not the numbers; they follow weight syncs."""
    import copy

    from r1.rollout.kernels import packed_linear_available

    model, tok = tiny
    policy = copy.deepcopy(model)
    plain = HFEngine(policy, tok, bf16=True, pack_weights=False)
    if not packed_linear_available(plain.model):
        pytest.skip("no prepacked bf16 linear on this CPU")
    packed = HFEngine(policy, tok, bf16=True)
    p = SamplingParams(max_new_tokens=12, temperature=1.0, seed=2, stop=())
    _, c = same_samples_across_a_sync(plain, packed, policy, _prompts(tok), 3, p, 1.5)

    def packs():  # the lean decoder's fused packs (the tiny Llama has one), else every Linear's
        lean = [lin.weight for lin in packed._lean.linears()] if packed._lean is not None else []
        return sum(getattr(m, "_r1_packed", None) is not None for m in packed.model.modules()) + sum(
            w is not None for w in lean)

    n = packs()
    assert n == (4 * len(packed.model.model.layers) + 1 if packed._lean is not None
                 else sum(isinstance(m, torch.nn.Linear) for m in packed.model.modules()))
    packed.release()  # what the trainer does before its update: the packed copies go
    assert packs() == 0
    with torch.no_grad():  # unpacked, the model's own forward still gives the same numbers
        ids = torch.tensor([_prompts(tok)[0]])
        assert torch.equal(packed.model(input_ids=ids).logits, plain.model(input_ids=ids).logits)
    e = packed.generate(_prompts(tok), 3, p)  # packed again, the same samples
    assert packs() == n and e.completion_ids == c.completion_ids and e.logprobs == c.logprobs


def test_dropping_finished_rows_keeps_the_others_exact(engine, tiny):
    """Rows that stop early leave the batch (and the KV cache); the rows that go on must
    still see exactly their own context: their sampling log-probs equal a teacher-forced pass."""
    model, tok = tiny
    prompts = _prompts(tok)
    gen = engine.generate(prompts, 4, SamplingParams(max_new_tokens=24, temperature=1.0, seed=2, stop=()))
    lengths = [len(c) for c in gen.completion_ids]
    assert min(lengths) < 10 and max(lengths) == 24  # some rows dropped out early, others went on
    _assert_logprobs_match_teacher_forcing(model, tok, prompts, gen, 4, 1.0)


def test_a_shard_samples_what_the_whole_batch_samples(engine, tiny):
    """Data parallelism: prompts split over ranks (row_offset/total_rows) get the same tokens
    as in one batch, although rows finish at different times on each side."""
    _, tok = tiny
    prompts = _prompts(tok) + [tok("Count to five", add_special_tokens=False)["input_ids"],
                               tok("?", add_special_tokens=False)["input_ids"]]
    base = dict(max_new_tokens=14, temperature=1.0, top_p=0.9, seed=11, stop=("a",))
    whole = engine.generate(prompts, 3, SamplingParams(**base))
    assert len(set(whole.finish_reasons)) == 2  # some rows stop early, so the batch shrinks
    rows = []
    for rank in range(2):
        part = engine.generate(prompts[2 * rank: 2 * rank + 2], 3,
                               SamplingParams(**base, row_offset=6 * rank, total_rows=12))
        rows += part.completion_ids
    assert rows == whole.completion_ids
    alone = engine.generate(prompts[1:2], 3, SamplingParams(**base))  # no offset: different draws
    assert alone.completion_ids != whole.completion_ids[3:6]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status; madvise semantics")
def test_file_paged_weights_leave_the_resident_set_and_keep_their_values(tmp_path):
    """`allocator.FilePagedWeights`: after `drop()` the module's 64 MB of weights are out of
    the process (RssFile falls by about that much), and the next forward reads them back
    exactly; no file is left in the folder."""
    from r1.allocator import FilePagedWeights

    def rss_file_mb():  # file-backed pages, or shared-memory ones where tmp_path is on a tmpfs
        lines = [x for x in open("/proc/self/status") if x.startswith(("RssFile:", "RssShmem:"))]
        return sum(int(x.split()[1]) for x in lines) / 1024

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2048, 4096), torch.nn.Linear(4096, 2048)).requires_grad_(False)
    x = torch.randn(3, 2048)
    want = net(x)
    pages = FilePagedWeights(net, tmp_path)
    assert not list(tmp_path.iterdir())
    assert torch.equal(net(x), want)  # every page touched: resident
    before = rss_file_mb()
    assert pages.drop()
    assert before - rss_file_mb() > 48  # of 64 MB
    assert torch.equal(net(x), want)
    with pytest.raises(ValueError):
        FilePagedWeights(torch.nn.Linear(4, 4), tmp_path)  # trainable weights are not paged


def test_memory_filesystem_finds_the_mount_a_folder_is_on(tmp_path):
    """The reference on disk saves memory only on a disk: a folder on a tmpfs is told apart
    (the longest mount point that holds the path decides; spaces come escaped as \\040)."""
    from r1.allocator import memory_filesystem

    mounts = ("/dev/vda1 / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\ntmpfs /data tmpfs rw 0 0\n"
              "/dev/vdb /data/disk\\040two xfs rw 0 0\n")
    assert memory_filesystem(Path("/dev/shm/run"), mounts) == "tmpfs"
    assert memory_filesystem(Path("/data/x"), mounts) == "tmpfs"
    assert memory_filesystem(Path("/data/disk two/run"), mounts) is None
    assert memory_filesystem(Path("/datax/run"), mounts) is None  # a prefix of the name is not a mount
    assert memory_filesystem(Path("/home/u/run"), mounts) is None
