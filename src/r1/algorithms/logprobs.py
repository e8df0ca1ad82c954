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

CHUNK_ROWS = 256  # rows of fp32 temporaries at a time: 256 × 49,152 × 4 B = 50 MB


class _SelectiveLogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, t: float, chunk: int) -> torch.Tensor:
        n = logits.shape[0]
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        for s in range(0, n, chunk):
            lse[s : s + chunk] = torch.logsumexp(logits[s : s + chunk].float() / t, dim=-1)
        picked = logits.gather(-1, targets[:, None])[:, 0].float() / t
        ctx.save_for_backward(logits, targets, lse)
        ctx.t, ctx.chunk = t, chunk
        return picked - lse

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, targets, lse = ctx.saved_tensors
        t, chunk = ctx.t, ctx.chunk
        grad = grad.float()
        out = torch.empty_like(logits)
        for s in range(0, logits.shape[0], chunk):
            e = s + chunk
            # d/dx_j (x_t/T - lse(x/T)) = (1[j = t] - softmax(x/T)_j) / T
            g = torch.exp(logits[s:e].float() / t - lse[s:e, None]).mul_(-grad[s:e, None])
            g.scatter_add_(-1, targets[s:e, None], grad[s:e, None])
            out[s:e] = g.div_(t)
        return out, None, None, None


def selective_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                       chunk: int = CHUNK_ROWS) -> torch.Tensor:
    """log softmax(logits / T) at `targets`: logits [..., V], targets [...] -> fp32 [...].
    Differentiable with respect to `logits`; equal to the full log-softmax's (tested)."""
    t = temperature if temperature > 0 else 1.0
    shape = targets.shape
    flat = logits.reshape(-1, logits.shape[-1])
    return _SelectiveLogSoftmax.apply(flat, targets.reshape(-1), t, chunk).view(shape)


@torch.no_grad()
def entropy(logits: torch.Tensor, temperature: float = 1.0, chunk: int = CHUNK_ROWS) -> torch.Tensor:
    """The entropy of softmax(logits / T) per position, fp32 [...], a chunk of rows at a time."""
    t = temperature if temperature > 0 else 1.0
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    for s in range(0, flat.shape[0], chunk):
        x = flat[s : s + chunk].float() / t
        logp = torch.log_softmax(x, dim=-1)
        out[s : s + chunk] = -(logp.exp() * logp).sum(-1)
    return out.view(logits.shape[:-1])
