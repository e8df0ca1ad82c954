"""Entropy control's pure pieces: the entropy's gradient in both log-prob paths, Clip-Cov and
KL-Cov against their definitions, the two controllers, the collapse test, and the held-out
standard error."""

from __future__ import annotations

import math

import pytest
import torch

from r1.algorithms.entropy import adapt_coef, adapt_temperature, collapse, collapse_message, entropy_bonus
from r1.algorithms.losses import POLICY_LOSSES, PolicyLossParams, clipped_surrogate, token_covariance


def full_entropy(logits: torch.Tensor, t: float) -> torch.Tensor:
    logp = torch.log_softmax(logits.float() / t, -1)
    return -(logp.exp() * logp).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_chunked_entropy_has_the_full_entropys_gradient(temperature):
    """Chunks of 3 rows over 10 (a ragged last chunk): the entropy and its gradient with respect
    to the logits equal autograd's through the full fp32 softmax."""
    from r1.algorithms.logprobs import entropy

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 50) * 3
    weights = torch.randn(2, 5)
    a = logits.clone().requires_grad_(True)
    got = entropy(a, temperature, chunk=3)
    (got * weights).sum().backward()
    b = logits.clone().requires_grad_(True)
    want = full_entropy(b, temperature)
    (want * weights).sum().backward()
    torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_fused_heads_entropy_has_the_full_entropys_gradient(temperature, monkeypatch):
    """The fused head's entropy output carries gradients: a loss of log-probs and entropies
    together gives h, W and b the gradients of the explicit logits' (slices of 64 over 300
    entries, blocks of 8 rows over 20); and a loss of the entropy alone works too."""
    import r1.algorithms.logprobs as lp

    monkeypatch.setattr(lp, "CHUNK_BYTES", 4 * 8 * 64)
    monkeypatch.setattr(lp, "ROW_BLOCK", 8)
    torch.manual_seed(0)
    h0, w0, b0 = torch.randn(4, 5, 16), torch.randn(300, 16) * 0.7, torch.randn(300)
    targets, wl, we = torch.randint(0, 300, (4, 5)), torch.randn(4, 5), torch.randn(4, 5)
    for with_logp in (True, False):
        h, w, b = (x.clone().requires_grad_(True) for x in (h0, w0, b0))
        logp, ent = lp.head_logprobs(h, w, targets, temperature, bias=b, with_entropy=True)
        ((logp * wl).sum() * with_logp + (ent * we).sum()).backward()
        h2, w2, b2 = (x.clone().requires_grad_(True) for x in (h0, w0, b0))
        logits = h2 @ w2.t() + b2
        full = torch.log_softmax(logits / temperature, -1)
        want = full.gather(-1, targets[..., None])[..., 0]
        ((want * wl).sum() * with_logp + (full_entropy(logits, temperature) * we).sum()).backward()
        for mine, ref in ((h, h2), (w, w2), (b, b2)):
            torch.testing.assert_close(mine.grad, ref.grad, rtol=1e-4, atol=1e-5)


def test_the_entropy_bonus_raises_the_entropy():
    """A few gradient steps on -H (the bonus alone) flatten a peaked distribution."""
    from r1.algorithms.logprobs import entropy

    logits = torch.tensor([[6.0, 0.0, -1.0, 0.5]], requires_grad=True)
    start = entropy(logits).item()
    for _ in range(20):
        loss = entropy_bonus(entropy(logits), 1.0).sum()
        loss.backward()
        with torch.no_grad():
            logits -= 0.5 * logits.grad
        logits.grad = None
    assert entropy(logits).item() > 1.5 * start


def test_the_adaptive_coefficient_steps_toward_the_target():
    """TRL's rule: up by delta at or below the target, down above it, within [low, high]; a
    step with nothing measured (NaN) leaves it."""
    assert adapt_coef(0.01, 0.1, 0.3, 0.005, 0.0, 1.0) == pytest.approx(0.015)
    assert adapt_coef(0.01, 0.3, 0.3, 0.005, 0.0, 1.0) == pytest.approx(0.015)
    assert adapt_coef(0.01, 0.5, 0.3, 0.005, 0.0, 1.0) == pytest.approx(0.005)
    assert adapt_coef(0.002, 0.5, 0.3, 0.005, 0.0, 1.0) == 0.0
    assert adapt_coef(0.999, 0.1, 0.3, 0.005, 0.0, 1.0) == 1.0
    assert adapt_coef(0.01, float("nan"), 0.3, 0.005, 0.0, 1.0) == 0.01


def test_the_temperature_controller_samples_a_sharp_policy_hotter():
    """log T moves by gain·log(target / H): hotter below the target, cooler above, unchanged
    at it or with nothing measured; within its bounds."""
    hot = adapt_temperature(0.8, 0.05, 0.3, 0.25, 0.3, 2.0)
    assert hot == pytest.approx(0.8 * 6 ** 0.25)
    assert adapt_temperature(0.8, 0.6, 0.3, 0.25, 0.3, 2.0) == pytest.approx(0.8 * 0.5 ** 0.25)
    assert adapt_temperature(0.8, 0.3, 0.3, 0.25, 0.3, 2.0) == pytest.approx(0.8)
    assert adapt_temperature(0.8, float("nan"), 0.3, 0.25, 0.3, 2.0) == 0.8
    assert adapt_temperature(1.9, 0.0, 0.3, 0.25, 0.3, 2.0) == 2.0
    assert adapt_temperature(0.31, 50.0, 0.3, 0.25, 0.3, 2.0) == 0.3


def test_collapse_is_found_within_the_window_only():
    """The first measured entropy is the reference; missing ones are skipped; a fall after the
    window is not a collapse of the first steps."""
    assert collapse([None, 1.0, 0.5, 0.19], 0.2, 10) == (4, 1.0, 0.19)
    assert collapse([1.0, float("nan"), 0.3, 0.25], 0.2, 10) is None
    assert collapse([1.0] + [0.5] * 9 + [0.01], 0.2, 10) is None
    assert collapse([], 0.2, 10) is None
    text = collapse_message((4, 1.0, 0.19), 0.2, 10)
    assert "1.000 to 0.190" in text and "entropy.control=temperature" in text and "clip_cov" in text
    # with a control on, the advice is about that control's settings, not switching it on
    on = collapse_message((4, 1.0, 0.19), 0.2, 10, "temperature")
    assert "entropy.control=temperature is on" in on and "entropy.temperature_max" in on
    assert "entropy.control=temperature with entropy.target" not in on and "clip_cov" in on
    assert "entropy.coef_delta" in collapse_message((4, 1.0, 0.19), 0.2, 10, "bonus")


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(4, 6, generator=g) * 3
    adv = torch.tensor([1.5, -1.5, 0.7, -0.2])
    mask = torch.ones(4, 6)
    mask[3, 4:] = 0
    return logp, adv, mask


def test_token_covariance_by_hand():
    logp, adv, mask = batch()
    cov = token_covariance(logp, adv, mask)
    m = mask.bool()
    a = adv[:, None].expand_as(logp)
    want = (a - a[m].mean()) * (logp - logp[m].mean())
    torch.testing.assert_close(cov[m], want[m])


def test_clip_cov_stops_the_gradient_of_its_picks_only():
    """On-policy (ratio 1): Clip-Cov's loss is the clipped surrogate's except on
    max(1, ratio·tokens) picks, all with a covariance inside the bounds, whose loss and
    gradient are zero; the same generator seed picks the same tokens."""
    logp, adv, mask = batch()
    params = PolicyLossParams(cov_ratio=0.2, clip_cov_lb=0.0, clip_cov_ub=100.0)
    x = logp.clone().requires_grad_(True)
    loss, picked = POLICY_LOSSES["clip_cov"](x, logp, adv, mask, params, torch.Generator().manual_seed(1))
    (loss * mask).sum().backward()
    assert int(picked.sum()) == int(0.2 * mask.sum())
    cov = token_covariance(logp, adv, mask)
    assert bool(((cov > 0) & mask.bool())[picked].all())
    base, _ = clipped_surrogate(logp, logp, adv)
    assert bool((loss[picked] == 0).all()) and torch.equal(loss[~picked], base[~picked])
    assert bool((x.grad[picked] == 0).all()) and bool((x.grad[~picked & mask.bool()] != 0).all())
    _, again = POLICY_LOSSES["clip_cov"](x, logp, adv, mask, params, torch.Generator().manual_seed(1))
    assert torch.equal(again, picked)
    # switched off (plain clip): nothing is stopped
    y = logp.clone().requires_grad_(True)
    plain, _ = POLICY_LOSSES["clip"](y, logp, adv, mask, params)
    (plain * mask).sum().backward()
    assert bool((y.grad[mask.bool()] != 0).all())


def test_clip_cov_picks_at_least_one_token_and_none_outside_the_bounds():
    logp, adv, mask = batch()
    _, picked = POLICY_LOSSES["clip_cov"](logp, logp, adv, mask, PolicyLossParams(cov_ratio=1e-9, clip_cov_lb=0.0))
    assert int(picked.sum()) == 1
    _, none = POLICY_LOSSES["clip_cov"](logp, logp, adv, mask, PolicyLossParams(clip_cov_lb=1e6, clip_cov_ub=2e6))
    assert int(none.sum()) == 0


def test_kl_cov_penalises_the_top_covariance_tokens_once_the_policy_moves():
    """KL-Cov: -A·ratio everywhere (no clip), plus coef·|log-ratio| on the top ratio·tokens by
    covariance; on-policy the penalty is zero in value and gradient, off-policy it is not."""
    old, adv, mask = batch()
    params = PolicyLossParams(cov_ratio=0.25, kl_cov_coef=2.0)
    same, picked = POLICY_LOSSES["kl_cov"](old.clone(), old, adv, mask, params)
    torch.testing.assert_close(same, -adv[:, None].expand_as(old))
    k = int(0.25 * mask.sum())
    cov = token_covariance(old, adv, mask).masked_fill(~mask.bool(), float("-inf"))
    assert int(picked.sum()) == k and set(cov.flatten().topk(k).indices.tolist()) == set(
        picked.flatten().nonzero()[:, 0].tolist())
    moved = (old + 0.5).requires_grad_(True)
    loss, _ = POLICY_LOSSES["kl_cov"](moved, old, adv, mask, params)
    ratio = math.exp(0.5)
    want = -adv[:, None] * ratio + picked * 2.0 * 0.5
    torch.testing.assert_close(loss, want.expand_as(loss))
    clip_loss, _ = POLICY_LOSSES["clip"](moved, old, adv, mask, params)
    assert not torch.allclose(loss, clip_loss)


def test_the_heldout_standard_error_is_over_problems():
    """Each problem's samples are averaged first; the error is their standard deviation over
    the square root of the number of problems."""
    from r1.eval.metrics import mean_se, per_problem_mean_se

    rows = [{"id": "a", "correct": True}, {"id": "a", "correct": True}, {"id": "b", "correct": True},
            {"id": "b", "correct": False}, {"id": "c", "correct": False}, {"id": "c", "correct": False}]
    mean, se = per_problem_mean_se(rows, "correct")
    assert mean == pytest.approx(0.5) and se == pytest.approx(0.5 / math.sqrt(3))
    assert mean_se([0.7]) == (0.7, 0.0) and mean_se([]) == (0.0, 0.0)
