"""The pure algorithm functions against values computed by hand."""

import math

import pytest
import torch

from r1.algorithms.advantages import ADVANTAGES, zero_variance_groups
from r1.algorithms.kl import KL_ESTIMATORS
from r1.algorithms.losses import agg_loss, clipped_surrogate


def test_grpo_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = ADVANTAGES["grpo"](r, group_size=4, eps=0.0 + 1e-12)
    # group 1: mean 0.5, unbiased std sqrt(1/3)
    s = math.sqrt(1 / 3)
    expect = [0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s, 0.0, 0.0, 0.0, 0.0]
    assert adv.tolist() == pytest.approx(expect, rel=1e-6)


def test_dr_grpo_has_no_std():
    r = torch.tensor([3.0, 1.0, 0.0, 0.0])
    assert ADVANTAGES["dr_grpo"](r, 2).tolist() == [1.0, -1.0, 0.0, 0.0]


def test_rloo_leave_one_out():
    r = torch.tensor([1.0, 0.0, 0.0])
    # 1 - mean(0,0) = 1 ; 0 - mean(1,0) = -0.5
    assert ADVANTAGES["rloo"](r, 3).tolist() == pytest.approx([1.0, -0.5, -0.5])


def test_zero_variance_groups():
    r = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5])
    assert zero_variance_groups(r, 2).tolist() == [True, False, True]


def test_kl_estimators_by_hand():
    logp = torch.tensor([[math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25)]])
    # k1 = log(0.5/0.25) = log 2; k2 = 0.5 log(2)^2; k3 = r - log r - 1 with r = ref/p = 0.5
    assert KL_ESTIMATORS["k1"](logp, ref).item() == pytest.approx(math.log(2))
    assert KL_ESTIMATORS["k2"](logp, ref).item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert KL_ESTIMATORS["k3"](logp, ref).item() == pytest.approx(0.5 - math.log(0.5) - 1)
    same = KL_ESTIMATORS["k3"](logp, logp)
    assert same.item() == 0.0


def test_k3_is_nonnegative_and_finite_on_wild_ratios():
    logp = torch.tensor([[0.0, -100.0, -1e4]])
    ref = torch.tensor([[-1e4, 0.0, 0.0]])
    kl = KL_ESTIMATORS["k3"](logp, ref)
    assert torch.isfinite(kl).all() and (kl >= 0).all()


def test_clipped_surrogate_by_hand():
    old = torch.zeros(1, 4)
    # ratios 1.5, 0.5, 1.5, 0.5 ; advantages +1, +1, -1, -1 per row -> use 4 rows
    logp = torch.log(torch.tensor([[1.5], [0.5], [1.5], [0.5]]))
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    loss, clipped = clipped_surrogate(logp, old[:, :1].expand(4, 1), adv, clip_low=0.2, clip_high=0.28)
    # A>0, r=1.5: max(-1.5, -1.28) = -1.28 (clipped); A>0, r=0.5: max(-0.5, -0.8) = -0.5
    # A<0, r=1.5: max(1.5, 1.28) = 1.5;              A<0, r=0.5: max(0.5, 0.8) = 0.8 (clipped)
    assert loss[:, 0].tolist() == pytest.approx([-1.28, -0.5, 1.5, 0.8])
    assert clipped[:, 0].tolist() == [True, False, False, True]


def test_gradient_of_surrogate_at_ratio_one_is_policy_gradient():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    adv = torch.tensor([2.0])
    loss, _ = clipped_surrogate(logp, logp.detach(), adv)
    loss.sum().backward()
    assert logp.grad.tolist() == [[-2.0, -2.0]]


def test_agg_loss_modes_by_hand():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert agg_loss(loss, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert agg_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert agg_loss(loss, mask, "seq-mean-token-sum-norm", max_len=5).item() == pytest.approx(10 / (2 * 5))
    with pytest.raises(ValueError):
        agg_loss(loss, mask, "bogus")


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_agg_loss_micro_batches_add_up_to_full_batch(mode):
    torch.manual_seed(0)
    loss = torch.randn(6, 5)
    mask = (torch.rand(6, 5) > 0.3).float()
    mask[:, 0] = 1
    full = agg_loss(loss, mask, mode, max_len=5)
    parts = sum(
        agg_loss(loss[i : i + 2], mask[i : i + 2], mode, num_tokens=mask.sum().item(), num_seqs=6.0, max_len=5)
        for i in range(0, 6, 2)
    )
    assert parts.item() == pytest.approx(full.item(), rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_selective_logprobs_equal_the_full_log_softmax_and_its_gradient(dtype, temperature):
    """Chunked (chunk 3 over 10 rows, so a ragged last chunk): the values and the gradient
    with respect to the logits equal those of the full fp32 log-softmax."""
    from r1.algorithms.logprobs import entropy, selective_logprobs

    torch.manual_seed(0)
    logits = (torch.randn(2, 5, 50) * 4).to(dtype)
    targets = torch.randint(0, 50, (2, 5))
    weights = torch.randn(2, 5)
    a = logits.clone().requires_grad_(True)
    got = selective_logprobs(a, targets, temperature, chunk=3)
    (got * weights).sum().backward()
    b = logits.clone().requires_grad_(True)
    full = torch.log_softmax(b.float() / temperature, -1)
    want = full.gather(-1, targets[..., None])[..., 0]
    (want * weights).sum().backward()
    assert got.dtype == torch.float32 and got.shape == (2, 5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    tol = 1e-5 if dtype == torch.float32 else 1e-2  # the gradient is returned in the logits' dtype
    torch.testing.assert_close(a.grad.float(), b.grad.float(), rtol=tol, atol=tol)
    ent = entropy(logits, temperature, chunk=3)
    torch.testing.assert_close(ent, -(full.exp() * full).sum(-1).detach(), rtol=1e-5, atol=1e-5)


def test_selective_logprobs_keep_no_fp32_copy_of_the_logits_for_backward():
    """What the autograd graph holds: the logits as given (bf16) and one fp32 number per
    position, not a [positions, vocab] fp32 tensor."""
    from r1.algorithms.logprobs import selective_logprobs

    saved = []

    def pack(t):
        saved.append((t.dtype, t.numel()))
        return t

    logits = torch.randn(64, 1000, dtype=torch.bfloat16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        selective_logprobs(logits, torch.randint(0, 1000, (64,)), 0.8)
    assert not [s for s in saved if s[0] == torch.float32 and s[1] > 64], saved


def test_selective_logprobs_default_chunks_stay_under_the_mmap_ceiling_and_stay_exact():
    """The default chunk keeps the fp32 work buffer under glibc's largest mmap threshold (32 MB;
    a larger one is mapped afresh, page by page, on every call), and over several chunks with a
    ragged last one the values and gradients still equal the full log-softmax's."""
    from r1.algorithms.logprobs import _chunk_rows, entropy, selective_logprobs

    vocab = 65_536
    logits = (torch.randn(150, vocab) * 3).to(torch.bfloat16)
    rows = _chunk_rows(logits, None)
    assert rows * vocab * 4 <= 32 << 20 and 150 % rows and 150 // rows >= 2
    targets = torch.randint(0, vocab, (150,))
    a = logits.clone().requires_grad_(True)
    got = selective_logprobs(a, targets, 0.8)
    got.sum().backward()
    b = logits.clone().requires_grad_(True)
    full = torch.log_softmax(b.float() / 0.8, -1)
    full.gather(-1, targets[:, None])[:, 0].sum().backward()
    torch.testing.assert_close(got, full.gather(-1, targets[:, None])[:, 0].detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.grad.float(), b.grad.float(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(entropy(logits, 0.8), -(full.exp() * full).sum(-1).detach(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_head_logprobs_equal_the_full_log_softmax_of_the_head(dtype, temperature, monkeypatch):
    """The fused head (vocabulary slices of 64 over 300 entries, blocks of 8 rows over 20, so
    ragged last slices and blocks) against log_softmax(h @ W^T + b): values, entropies and
    the gradients with respect to h, W and b."""
    import r1.algorithms.logprobs as lp

    monkeypatch.setattr(lp, "CHUNK_BYTES", 4 * 8 * 64)
    monkeypatch.setattr(lp, "ROW_BLOCK", 8)
    torch.manual_seed(0)
    h0, w0, b0 = torch.randn(4, 5, 16).to(dtype), (torch.randn(300, 16) * 0.7).to(dtype), torch.randn(300).to(dtype)
    targets, weights = torch.randint(0, 300, (4, 5)), torch.randn(4, 5)
    h, w, b = (x.clone().requires_grad_(True) for x in (h0, w0, b0))
    got, ent = lp.head_logprobs(h, w, targets, temperature, bias=b, with_entropy=True)
    (got * weights).sum().backward()
    h2, w2, b2 = (x.clone().requires_grad_(True) for x in (h0, w0, b0))
    full = torch.log_softmax((h2 @ w2.t() + b2).float() / temperature, -1)
    want = full.gather(-1, targets[..., None])[..., 0]
    (want * weights).sum().backward()
    assert got.shape == ent.shape == (4, 5) and got.dtype == ent.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, -(full.exp() * full).sum(-1).detach(), rtol=1e-5, atol=1e-5)
    tol = 1e-5 if dtype == torch.float32 else 2e-2  # bf16: gradients rounded per vocabulary slice
    for mine, ref in ((h, h2), (w, w2), (b, b2)):
        assert mine.grad.dtype == dtype
        torch.testing.assert_close(mine.grad.float(), ref.grad.float(), rtol=tol, atol=tol)


def test_head_logprobs_under_autocast_compute_as_the_autocast_head_does():
    """fp32 weights under bf16 autocast (LoRA, `bf16-autocast`): the logits are the bf16
    matmul's, as the model's own head makes them, and the gradients come back in fp32."""
    from r1.algorithms.logprobs import head_logprobs

    torch.manual_seed(0)
    h = torch.randn(6, 32, requires_grad=True)
    w = torch.randn(500, 32, requires_grad=True)
    targets = torch.randint(0, 500, (6,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = head_logprobs(h, w, targets, 0.8)
        logits = h @ w.t()
    assert logits.dtype == torch.bfloat16
    want = torch.log_softmax(logits.float() / 0.8, -1).gather(-1, targets[:, None])[:, 0]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    got.sum().backward()
    assert h.grad.dtype == w.grad.dtype == torch.float32 and h.grad.abs().sum() > 0


def test_head_logprobs_keep_neither_the_logits_nor_their_gradient():
    """What autograd holds: the hidden states, the head's weight and one fp32 number per row;
    nothing of [rows, vocab] (the point of the fusion: 100 MB each way at 1k tokens × 49k)."""
    from r1.algorithms.logprobs import head_logprobs

    saved = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    h = torch.randn(64, 32, dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(2000, 32, dtype=torch.bfloat16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        head_logprobs(h, w, torch.randint(0, 2000, (64,)), 0.8)
    assert saved and not [s for s in saved if len(s) == 2 and s[0] == 64 and s[1] == 2000], saved


def test_the_grpo_objective_composes_its_terms_and_splits_over_micro_batches():
    """The whole objective as one pure function: the registered policy loss times the TIS
    weights, minus coef·H, plus β·KL, aggregated; two halves with the step's counts add up to
    the whole; each term switched off leaves exactly the others."""
    from r1.algorithms.kl import KL_ESTIMATORS
    from r1.algorithms.losses import POLICY_LOSSES, PolicyLossParams, agg_loss
    from r1.algorithms.objective import MicroBatch, ObjectiveParams, grpo_objective

    g = torch.Generator().manual_seed(0)
    b, t = 4, 6
    logp = -torch.rand(b, t, generator=g) - 0.1
    old = logp + 0.1 * torch.randn(b, t, generator=g)
    engine = old + 0.05 * torch.randn(b, t, generator=g)
    ref = logp + 0.2 * torch.randn(b, t, generator=g)
    ent = torch.rand(b, t, generator=g)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    mask = torch.ones(b, t)
    mask[1, 4:] = 0
    mask[3, 2:] = 0
    loss_params = PolicyLossParams(clip_low=0.2, clip_high=0.28)
    params = ObjectiveParams(loss=loss_params, beta=0.1, tis_cap=2.0, loss_agg="token-mean")
    mb = MicroBatch(logp=logp, old_logp=old, advantages=adv, mask=mask, entropy=ent, rollout_logp=engine, ref_logp=ref)
    loss, metrics = grpo_objective(mb, params, entropy_coef=0.01)

    per, clipped = POLICY_LOSSES["clip"](logp, old, adv, mask, loss_params)
    weight = (old - engine).exp().clamp(max=2.0) * mask
    want = agg_loss(per * weight - 0.01 * ent + 0.1 * KL_ESTIMATORS["k3"](logp, ref), mask, "token-mean")
    assert torch.allclose(loss, want)
    assert set(metrics) == {"clip_frac", "entropy", "kl", "tis_weight"}
    assert float(metrics["clip_frac"]) == pytest.approx(float((clipped.float() * mask).sum() / mask.sum()))

    n_tok = float(mask.sum())
    halves = [grpo_objective(MicroBatch(logp=logp[s], old_logp=old[s], advantages=adv[s], mask=mask[s],
                                        entropy=ent[s], rollout_logp=engine[s], ref_logp=ref[s]),
                             params, entropy_coef=0.01, num_tokens=n_tok, num_seqs=b)[0]
              for s in (slice(0, 2), slice(2, 4))]
    assert torch.allclose(halves[0] + halves[1], loss)

    plain, plain_metrics = grpo_objective(mb, ObjectiveParams(loss=loss_params))
    assert torch.allclose(plain, agg_loss(per, mask, "token-mean")) and set(plain_metrics) == {"clip_frac", "entropy"}
