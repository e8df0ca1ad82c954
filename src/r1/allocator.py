"""Give freed tensor memory back to the operating system (glibc), where memory is scarcer
than time: opt in with `R1_RETURN_FREED_MEMORY=1`.

PyTorch's CPU tensors come from malloc. glibc serves a large block from mmap only above a
threshold that it raises each time such a block is freed (up to 32 MB), after which blocks of
that size come from the heap and stay in the process when freed: a training step's
activations, gradients and log-probs then keep their peak in the resident set. A fixed 64 KB
threshold turns that off (on `benchmarks/grpo_vs_trl.py`'s step: 2.8 GB resident between steps
instead of 3.8 GB, peak 3.3–3.9 GB instead of 3.9–4.1 GB) but every large tensor then comes
from fresh pages: measured on `benchmarks/train_step.py`, the update took 5.8–6.2 s instead of
3.9–4.1 s and even a bare bf16 matmul ran at half speed. So it is off unless asked for.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_done = False


def return_freed_memory(mmap_threshold: int = 64 << 10, trim_threshold: int = 1 << 20) -> bool:
    """Set glibc's mmap and trim thresholds once per process; True where it took effect."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("R1_RETURN_FREED_MEMORY") != "1":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1 and ok
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    _done = ok
    return ok
