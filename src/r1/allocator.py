"""Give freed tensor memory back to the operating system (glibc), where memory is scarcer
than time: opt in with `R1_RETURN_FREED_MEMORY=1`.

PyTorch's CPU tensors come from malloc. glibc serves a large block from mmap only above a
threshold that it raises each time such a block is freed (up to 32 MB), after which blocks of
that size come from the heap and stay in the process when freed: a training step's
activations, gradients and log-probs then keep their peak in the resident set. A fixed 64 KB
threshold turns that off (less resident memory between steps and a lower peak) but every
large tensor then comes from fresh pages, and the update runs markedly slower
(docs/performance.md has both sides). So it is off unless asked for.

`FilePagedWeights(module, folder)` moves a frozen module's parameters into one file, mapped
shared, and unlinks the file at once (nothing is left behind, even by a killed process; the
space is freed when the process ends). `drop()` takes the pages out of the process
(`madvise(MADV_DONTNEED)`); the next use faults them back in from the page cache, or from
disk where the kernel reclaimed them under memory pressure. The values never change: an exact
way to keep GRPO's reference model out of the resident set during sampling and the update
(`model.reference_on_disk`). The folder must be on a disk: on a tmpfs the pages would stay in
memory (`memory_filesystem` tells).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import sys
from pathlib import Path
from typing import Any

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_done = False


def return_freed_memory(mmap_threshold: int = 64 << 10, trim_threshold: int = 1 << 20, force: bool = False) -> bool:
    """Set glibc's mmap and trim thresholds once per process, where `force` (`model.low_memory`)
    or R1_RETURN_FREED_MEMORY=1 asks for it; True where it took effect."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or not (force or os.environ.get("R1_RETURN_FREED_MEMORY") == "1"):
        return False
    try:
        libc = _libc()
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1 and ok
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    _done = ok
    return ok


_MADV_DONTNEED = 4
_MEMORY_FILESYSTEMS = {"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"}


def memory_filesystem(path: Path, mounts: str | None = None) -> str | None:
    """The type of the in-memory filesystem `path` is on (tmpfs...), or None (a disk, or
    unknown: no /proc/self/mounts). `mounts`: that file's text, for tests."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return None
    target, best, kind = str(Path(path).resolve()), -1, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, kind = len(point), fields[2]
    return kind if kind in _MEMORY_FILESYSTEMS else None


_ALIGN = 64


class FilePagedWeights:
    """A frozen CPU module's parameters in one unlinked, shared file mapping (see above)."""

    def __init__(self, module: Any, folder: Path):
        import torch

        params = list(module.parameters())  # unique tensors (tied weights once)
        if any(p.requires_grad or p.device.type != "cpu" for p in params):
            raise ValueError("only frozen CPU weights can be paged from a file")
        offsets, size = [], 0
        for p in params:
            offsets.append(size)
            size += -(-p.numel() * p.element_size() // _ALIGN) * _ALIGN
        self.size = max(size, 1)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f".paged-weights-{os.getpid()}-{id(self)}"
        try:
            with open(path, "wb") as f:
                f.truncate(self.size)
                for p, off in zip(params, offsets):
                    f.seek(off)
                    f.write(p.detach().contiguous().view(torch.uint8).numpy().tobytes())
            self.storage = torch.UntypedStorage.from_file(str(path), shared=True, nbytes=self.size)
        finally:
            path.unlink(missing_ok=True)
        with torch.no_grad():
            for p, off in zip(params, offsets):
                view = torch.empty(0, dtype=p.dtype).set_(self.storage, off // p.element_size(), p.shape)
                p.data = view  # the parameter object stays (tied weights keep sharing it)
        self._madvise = _libc_madvise()

    def drop(self) -> bool:
        """Take the pages out of this process; True where the system allows it."""
        if self._madvise is None:
            return False
        length = -(-self.size // mmap.PAGESIZE) * mmap.PAGESIZE
        return self._madvise(ctypes.c_void_p(self.storage.data_ptr()), ctypes.c_size_t(length), _MADV_DONTNEED) == 0


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def _libc_madvise():
    try:
        fn = _libc().madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn
