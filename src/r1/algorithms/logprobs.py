"""Log-probabilities of chosen tokens without the full log-softmax.

`log softmax(x / T)[target]` for every position needs only the target's logit and the
log-sum-exp of the row. Computing the whole `[positions, vocab]` log-softmax in fp32 (and
keeping it for the backward pass) costs 4 bytes × vocab per position twice over: 400 MB for
8 × 128 completion tokens of a 49k vocabulary. `selective_logprobs` keeps only the logits as
they came (bf16 under r1's default precision) and one fp32 number per position, and works
through the rows in chunks in both passes, so the fp32 temporaries never exceed one chunk.
"""

from __future__ import annotations

import torch

CHUNK_BYTES = 16 << 20  # fp32 work buffer: 85 rows of a 49,152 vocabulary


def _chunk_rows(logits: torch.Tensor, chunk: int | None) -> int:
    """Rows per chunk: `chunk`, else as many as fit CHUNK_BYTES of fp32. Kept well under glibc's
    largest mmap threshold (32 MB): a larger buffer is mapped afresh on every call and each of
    its pages faults in again, which costs more than the arithmetic."""
    return chunk or max(1, CHUNK_BYTES // (4 * logits.shape[-1]))


def _work_buffer(logits: torch.Tensor, chunk: int) -> torch.Tensor:
    """The one fp32 buffer of `chunk` rows (fewer for a shorter input) every chunk reuses."""
    return logits.new_empty((min(chunk, logits.shape[0]), logits.shape[1]), dtype=torch.float32)


def _scaled(buf: torch.Tensor, rows: torch.Tensor, t: float) -> torch.Tensor:
    """`buf` (fp32, at least as many rows) filled with rows / t: a view, no new memory."""
    out = buf[: rows.shape[0]]
    out.copy_(rows)
    return out if t == 1.0 else out.mul_(1.0 / t)


class _SelectiveLogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, t: float, chunk: int) -> torch.Tensor:
        n = logits.shape[0]
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        buf = _work_buffer(logits, chunk)
        for s in range(0, n, chunk):
            x = _scaled(buf, logits[s : s + chunk], t)
            top = x.amax(-1, keepdim=True)
            lse[s : s + chunk] = x.sub_(top).exp_().sum(-1).log_().add_(top[:, 0])
        picked = logits.gather(-1, targets[:, None])[:, 0].float()
        ctx.save_for_backward(logits, targets, lse)
        ctx.t, ctx.chunk = t, chunk
        return (picked if t == 1.0 else picked.mul_(1.0 / t)) - lse

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, targets, lse = ctx.saved_tensors
        t, chunk = ctx.t, ctx.chunk
        scale = grad.float() / t  # d/dx_j (x_t/T - lse(x/T)) = (1[j = t] - softmax(x/T)_j) / T
        out = torch.empty_like(logits)
        buf = _work_buffer(logits, chunk)
        for s in range(0, logits.shape[0], chunk):
            e = s + chunk
            g = _scaled(buf, logits[s:e], t).sub_(lse[s:e, None]).exp_().mul_(-scale[s:e, None])
            g.scatter_add_(-1, targets[s:e, None], scale[s:e, None])
            out[s:e] = g
        return out, None, None, None


def selective_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                       chunk: int | None = None) -> torch.Tensor:
    """log softmax(logits / T) at `targets`: logits [..., V], targets [...] -> fp32 [...].
    Differentiable with respect to `logits`; equal to the full log-softmax's (tested)."""
    t = temperature if temperature > 0 else 1.0
    shape = targets.shape
    flat = logits.reshape(-1, logits.shape[-1])
    return _SelectiveLogSoftmax.apply(flat, targets.reshape(-1), t, _chunk_rows(flat, chunk)).view(shape)


class _Entropy(torch.autograd.Function):
    """H(softmax(x / T)) per row, a chunk of rows at a time in reused fp32 buffers. Backward:
    dH/dx_j = -p_j (log p_j + H) / T, made again a chunk at a time from the saved logits."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, t: float, chunk: int) -> torch.Tensor:
        out = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(out)
        buf = _work_buffer(logits, chunk)
        probs = torch.empty_like(buf)
        for s in range(0, logits.shape[0], chunk):
            x = _scaled(buf, logits[s : s + chunk], t)
            top = x.amax(-1, keepdim=True)
            x.sub_(top)  # the entropy does not change with a shift of x
            p = torch.exp(x, out=probs[: x.shape[0]])
            total = p.sum(-1)
            out[s : s + chunk] = total.log() - p.mul_(x).sum(-1) / total
            lse[s : s + chunk] = total.log_().add_(top[:, 0])
        ctx.save_for_backward(logits, lse, out)
        ctx.t, ctx.chunk = t, chunk
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, lse, ent = ctx.saved_tensors
        t, chunk = ctx.t, ctx.chunk
        scale = grad.float() / t
        out = torch.empty_like(logits)
        buf = _work_buffer(logits, chunk)
        probs = torch.empty_like(buf)
        for s in range(0, logits.shape[0], chunk):
            e = s + chunk
            logp = _scaled(buf, logits[s:e], t).sub_(lse[s:e, None])
            p = torch.exp(logp, out=probs[: logp.shape[0]])
            out[s:e] = logp.add_(ent[s:e, None]).mul_(p).mul_(-scale[s:e, None])
        return out, None, None


def entropy(logits: torch.Tensor, temperature: float = 1.0, chunk: int | None = None) -> torch.Tensor:
    """The entropy of softmax(logits / T) per position, fp32 [...], a chunk of rows at a time
    (H = lse - sum(p * x) over x = logits / T). Differentiable with respect to `logits` (an
    entropy bonus); nothing of [..., V] is kept beyond the logits themselves."""
    t = temperature if temperature > 0 else 1.0
    flat = logits.reshape(-1, logits.shape[-1])
    return _Entropy.apply(flat, t, _chunk_rows(flat, chunk)).view(logits.shape[:-1])


# -- the LM head fused in: logits made a vocabulary slice at a time, never kept ----------------

ROW_BLOCK = 2048  # rows per call of the fused function (each re-reads the head's weight)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """What the LM head's matmul runs in: autocast's dtype where it is on, else the input's."""
    dev = x.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype


def _cols(rows: int, vocab: int) -> int:
    """Vocabulary columns per slice: an fp32 [rows, cols] buffer within CHUNK_BYTES."""
    return max(64, min(vocab, CHUNK_BYTES // (4 * rows)))


class _HeadLogSoftmax(torch.autograd.Function):
    """log softmax((h @ W^T + b) / T)[target] for rows of `h`, going through W a slice of
    rows (vocabulary entries) at a time with an online log-sum-exp, so that neither the
    logits nor their gradient ([rows, vocab]) ever exist whole; the backward pass makes each
    slice's logits again (one more matmul of the head) and writes that slice's weight
    gradient directly. Values: each logit is rounded to the compute dtype as the model's own
    LM head rounds it, then handled in fp32."""

    @staticmethod
    def forward(ctx, h, weight, bias, targets, t: float, dtype: torch.dtype, want_entropy: bool):
        n, vocab = h.shape[0], weight.shape[0]
        hc = h.to(dtype)
        cols = _cols(n, vocab)
        f32 = dict(dtype=torch.float32, device=h.device)
        top = torch.full((n,), float("-inf"), **f32)  # running max of x = logit / T
        total = torch.zeros(n, **f32)  # sum of exp(x - top)
        moment = torch.zeros(n, **f32) if want_entropy else None  # sum of exp(x - top) * (x - top)
        picked = torch.empty(n, **f32)
        buf = torch.empty((n, cols), **f32)
        probs = torch.empty_like(buf) if want_entropy else None
        for c0 in range(0, vocab, cols):
            c1 = min(vocab, c0 + cols)
            x = _head_slice(buf, hc, weight, bias, c0, c1, dtype, t)
            inside = (targets >= c0) & (targets < c1)
            picked[inside] = x[inside, targets[inside] - c0]
            new_top = torch.maximum(top, x.amax(-1))
            shift = (top - new_top).exp_()  # rescales what the earlier slices summed
            x.sub_(new_top[:, None])
            if want_entropy:
                p = torch.exp(x, out=probs[:, : c1 - c0])
                moment.add_(total * (top - new_top).nan_to_num_(0.0)).mul_(shift).add_(p.mul(x).sum(-1))
                total.mul_(shift).add_(p.sum(-1))
            else:
                total.mul_(shift).add_(x.exp_().sum(-1))
            top = new_top
        lse = total.log().add_(top)
        ent = total.log().sub_(moment / total) if want_entropy else None
        ctx.save_for_backward(h, weight, bias, targets, lse, ent)
        ctx.t, ctx.dtype, ctx.cols = t, dtype, cols
        ctx.set_materialize_grads(False)
        return picked - lse, ent

    @staticmethod
    def backward(ctx, grad, grad_entropy):
        h, weight, bias, targets, lse, ent = ctx.saved_tensors
        t, dtype, cols = ctx.t, ctx.dtype, ctx.cols
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        n, vocab = h.shape[0], weight.shape[0]
        hc = h.to(dtype)
        # d/dz_j (z_t/T - lse(z/T)) = (1[j = t] - p_j) / T;  dH/dz_j = -p_j (log p_j + H) / T
        scale = grad.float() / t if grad is not None else torch.zeros(n, dtype=torch.float32, device=h.device)
        scale_h = grad_entropy.float() / t if grad_entropy is not None else None
        grad_h = torch.zeros(h.shape, dtype=torch.float32, device=h.device) if need_h else None
        grad_w = torch.empty_like(weight) if need_w else None
        grad_b = torch.empty_like(bias) if need_b else None
        buf = torch.empty((n, cols), dtype=torch.float32, device=h.device)
        probs = torch.empty_like(buf) if scale_h is not None else None
        for c0 in range(0, vocab, cols):
            c1 = min(vocab, c0 + cols)
            logp = _head_slice(buf, hc, weight, bias, c0, c1, dtype, t).sub_(lse[:, None])
            if scale_h is None:
                g = logp.exp_().mul_(-scale[:, None])
            else:
                p = torch.exp(logp, out=probs[:, : c1 - c0])
                g = logp.add_(ent[:, None]).mul_(scale_h[:, None]).add_(scale[:, None]).mul_(p).neg_()
            inside = (targets >= c0) & (targets < c1)
            rows = inside.nonzero()[:, 0]
            g[rows, targets[rows] - c0] += scale[rows]
            gc = g.to(dtype)
            if need_w:
                grad_w[c0:c1] = (gc.t() @ hc).to(weight.dtype)
            if need_b:
                grad_b[c0:c1] = g.sum(0).to(bias.dtype)
            if need_h:
                grad_h += gc @ weight[c0:c1].to(dtype)
        return (grad_h.to(h.dtype) if need_h else None), grad_w, grad_b, None, None, None, None


def _head_slice(buf, hc, weight, bias, c0: int, c1: int, dtype, t: float) -> torch.Tensor:
    """`buf`'s first c1 - c0 columns filled with the logits of vocabulary [c0, c1) / T (fp32)."""
    logits = hc @ weight[c0:c1].to(dtype).t()
    if bias is not None:
        logits = logits + bias[c0:c1].to(dtype)
    x = buf[:, : c1 - c0]
    x.copy_(logits)
    return x if t == 1.0 else x.mul_(1.0 / t)


def head_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                  bias: torch.Tensor | None = None, with_entropy: bool = False):
    """`selective_logprobs(hidden @ weight.T + bias, targets)` (and `entropy` when asked) for
    hidden [..., H], weight [V, H], targets [...], without the [..., V] logits: fp32 [...]
    each (entropy None when not asked). Both differentiable with respect to hidden, weight,
    bias (the entropy's backward runs only when a loss uses it: an entropy bonus)."""
    t = temperature if temperature > 0 else 1.0
    shape = targets.shape
    flat, tgt = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    dtype = _compute_dtype(hidden)
    parts = [_HeadLogSoftmax.apply(flat[s : s + ROW_BLOCK], weight, bias, tgt[s : s + ROW_BLOCK], t, dtype,
                                   with_entropy) for s in range(0, flat.shape[0], ROW_BLOCK)]
    logp = torch.cat([p[0] for p in parts]).view(shape)
    return logp, torch.cat([p[1] for p in parts]).view(shape) if with_entropy else None
