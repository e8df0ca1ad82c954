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
    its pages faults in again (measured: a 50 MB chunk's exp took 37 ms, most of it faults)."""
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


@torch.no_grad()
def entropy(logits: torch.Tensor, temperature: float = 1.0, chunk: int | None = None) -> torch.Tensor:
    """The entropy of softmax(logits / T) per position, fp32 [...], a chunk of rows at a time:
    H = lse - sum(p * x) over x = logits / T, in two reused fp32 buffers."""
    t = temperature if temperature > 0 else 1.0
    flat = logits.reshape(-1, logits.shape[-1])
    chunk = _chunk_rows(flat, chunk)
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    buf = _work_buffer(flat, chunk)
    probs = torch.empty_like(buf)
    for s in range(0, flat.shape[0], chunk):
        x = _scaled(buf, flat[s : s + chunk], t)
        x.sub_(x.amax(-1, keepdim=True))  # the entropy does not change with a shift of x
        p = torch.exp(x, out=probs[: x.shape[0]])
        total = p.sum(-1)
        out[s : s + chunk] = total.log() - p.mul_(x).sum(-1) / total
    return out.view(logits.shape[:-1])
