"""Is this answer right? The one verification path of r1: rewards, `r1 eval`, `r1 filter`
and the pipeline all come here (through a task's `verify`, or `answers_match`).

1. **What is judged**: `answers_match(gold, text)` takes an extracted answer or a whole
   completion. From a completion it judges the content of the last ``<answer>…</answer>``;
   without tags, the whole text. Math-Verify's extraction (its default configuration:
   LaTeX, then plain expressions and numbers, ``\\boxed{}`` and "final answer is" phrases
   first) then finds the answer in it. A bare answer (``x >= 5``, ``(7, 6)``) is read as LaTeX
   math (see `math_mode`), and digit groups written with spaces are joined.
2. **Fast paths**: the same string (after stripping spaces, ``$…$`` and a final period) is
   the same answer, even where Math-Verify parses neither (``\\text{(C)}``, ``yes``); two
   plain integers are compared as integers, which is exactly Math-Verify's verdict.
3. **Math-Verify** `parse` + `verify` for everything else, in a worker process with a hard
   timeout: Math-Verify's own timeouts use SIGALRM, which works only in a main thread and
   cannot interrupt a long computation inside C code (``2^{2^{2^{2^{9}}}}``), so a worker
   that overruns is killed and the answer counts as not verified. Any thread may call.

The worker processes are fresh interpreters that import Math-Verify once and stay; a
verdict is cached per (gold, answer) pair. `stats()` counts calls, cache hits and timeouts.
"""

from __future__ import annotations

import atexit
import functools
import logging
import re
import threading
import tempfile
import time

from r1.data.answers import answer_span, extract_answer
from r1.errors import R1Error

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0  # the hard limit of one comparison, waiting for a worker included
MAX_WORKERS = 16  # concurrent comparisons (threads beyond it wait, within their timeout)
MAX_CHARS = 20_000  # longer texts are judged on their last MAX_CHARS characters

_INT_RE = re.compile(r"[-+]?\d+")
_LATEX_DELIMS = ("$", "\\(", "\\[", "\\boxed", "\\fbox")
_NUMBERISH_RE = re.compile(r"[-+]?\d[\d ,.]*")
_COMMAND_RE = re.compile(r"\\[A-Za-z]+(\{[A-Za-z*]+\})?")  # \frac, \begin{pmatrix}, \text{Evelyn}
_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_DIGIT_GROUP_RE = re.compile(r"(?<=\d)(?:\\[,;:! ]|~| )(?=\d{3}(?!\d))|(?<=\d,)\\!(?=\d{3}(?!\d))")


def answer_region(text: str) -> str:
    """What is judged of `text`: the last ``<answer>…</answer>``'s content, else all of it."""
    span = answer_span(text)
    return span if span is not None else text.strip()


def _plain(text: str) -> str:
    s = text.strip()
    if len(s) > 1 and s.startswith("$") and s.endswith("$") and "$" not in s[1:-1]:
        s = s[1:-1].strip()
    return s.rstrip(".").strip()


def _fast_verdict(gold: str, answer: str) -> bool | None:
    """True/False where Math-Verify would say the same for sure; None to ask it."""
    g, a = _plain(gold), _plain(answer)
    if not a:
        return False
    if g == a:
        return True
    if _INT_RE.fullmatch(g) and _INT_RE.fullmatch(a):
        return int(g) == int(a)
    return None


def answers_match(gold: str, text: str | None, *, timeout: float = TIMEOUT_S) -> bool:
    """True when `text` (an extracted answer or a whole completion) gives the answer `gold`."""
    if text is None:
        return False
    answer = answer_region(str(text))
    fast = _fast_verdict(str(gold), answer)
    if fast is not None:
        _STATS["fast"] += 1
        return fast
    return _verdict(str(gold), answer[-MAX_CHARS:], timeout)


_cache: dict[tuple[str, str], bool] = {}
_cache_lock = threading.Lock()
_CACHE_MAX = 100_000
_STATS = {"fast": 0, "cached": 0, "math_verify": 0, "timeouts": 0, "worker_errors": 0}


def extract(text: str | None, *, fallback: str = "math", timeout: float = TIMEOUT_S) -> str | None:
    """The answer a text gives. With `fallback` "math", as a short string that
    `answers_match` reads the same way: the last ``<answer>``'s content (a ``\\boxed{}``
    inside it wins), else the one ``\\boxed{}``'s content (several: all of them, which
    Math-Verify reads as a set), else the string Math-Verify's extraction takes ("final
    answer is $…$", LaTeX, numbers; in ``$…$`` when it is more than a number); None if there
    is none. Any other `fallback` (none, boxed, last_number) is `answers.extract_answer`'s."""
    if text is None:
        return None
    if fallback != "math":
        return extract_answer(text, fallback=fallback)
    if answer_span(text) is not None or text.count("\\boxed") + text.count("\\fbox") == 1:
        return extract_answer(text, fallback="boxed")
    first = min((i for i in (text.find("\\boxed"), text.find("\\fbox")) if i >= 0), default=-1)
    if first >= 0:
        return text[first:].strip()
    done, result = _POOL.call("extract", (text[-MAX_CHARS:],), timeout)
    return result if done else None


def stats() -> dict:
    """Counters since start: fast-path verdicts, cache hits, Math-Verify calls, timeouts."""
    return dict(_STATS)


def _verdict(gold: str, answer: str, timeout: float) -> bool:
    key = (gold, answer)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        _STATS["cached"] += 1
        return hit
    _STATS["math_verify"] += 1
    done, result = _POOL.call("compare", (gold, answer), timeout)
    if not done:  # timed out: not verified, and not cached (a loaded machine may be slow)
        return False
    result = bool(result)
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[key] = result
    return result


# -- the worker side -------------------------------------------------------------------------

def _delimited(text: str) -> bool:
    """Whether `text` has math delimiters or a boxed answer (an escaped ``\\$`` is a dollar)."""
    text = text.replace("\\$", "")
    return any(d in text for d in _LATEX_DELIMS)


def math_mode(text: str, *, gold: bool = False) -> bool:
    """Whether a text is read as LaTeX math (Math-Verify's parse of ``$text$``) rather than
    handed to Math-Verify's extraction as it is.

    Texts with math delimiters or ``\\boxed{}``, and prose (a word of two or more letters
    outside LaTeX commands: "The answer is 18 apples"), go to the extraction as they are. A
    bare answer such as ``x >= 5``, ``(7, 6)`` or ``2x+3`` is math: the extraction would take
    its last number. Plain numbers with separators are read by the extraction's number rules
    (``1 000``, decimal comma ``1000,99``, ``1,22``), except that a gold answer like ``1,2``
    is a list (golds write decimals with a point), and so is any ``1, 2`` with a space."""
    s = text.strip()
    if _delimited(s):
        return False
    if _NUMBERISH_RE.fullmatch(s):
        return (gold and " " not in s) or ", " in s
    return not _WORD_RE.search(_COMMAND_RE.sub(" ", s))


def join_digit_groups(text: str) -> str:
    """``1 000``, ``1\\,000``, ``1~000`` written as ``1000``: a space of any kind between
    digits and a group of exactly three digits (Math-Verify reads ``$1 000$`` as ``1*0``)."""
    return _DIGIT_GROUP_RE.sub("", text)


def _parse(text: str, timeout: int, gold: bool = False):
    """Math-Verify's parse of an answer or a text, with its default extraction."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    text = join_digit_groups(text)
    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    if math_mode(text, gold=gold):
        return parse(f"${text.strip()}$", extraction_config=config, parsing_timeout=timeout)
    found = parse(text, extraction_config=config, parsing_timeout=timeout)
    if not found and not _delimited(text) and _COMMAND_RE.search(text) and len(text) < 200:
        found = parse(f"${text.strip()}$", extraction_config=config, parsing_timeout=timeout)  # \text{Evelyn}
    return found


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str, timeout: int):
    return _parse(gold, timeout, gold=True)


def _compare(gold: str, answer: str, timeout: int) -> bool:
    from math_verify import verify

    g = _parse_gold(gold, timeout)
    a = _parse(answer, timeout)
    return bool(g and a and verify(g, a, timeout_seconds=timeout))


def _extract(text: str, timeout: int) -> str | None:
    """The string Math-Verify's extraction took the answer from (None: it found none), in
    ``$…$`` when it is more than a number, so that it parses again to the same thing."""
    from sympy import Number

    parsed = _parse(text, timeout)
    if not parsed:
        return None
    found = str(parsed[-1]).strip()
    if isinstance(parsed[0], Number) or _delimited(found):
        return found
    return f"${found}$"


_OPS = {"compare": _compare, "extract": _extract}


def _serve() -> None:
    """A worker process's loop: (op, args) in on stdin, the result out, until stdin closes.
    Math-Verify runs in this process's main thread, so its own SIGALRM timeouts work too."""
    import os
    from multiprocessing.connection import Connection

    out = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # a print from a library must not corrupt the replies
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its timeouts are ours to report
    inbox = Connection(0, writable=False)
    import math_verify  # noqa: F401 - loaded before saying ready

    out.send("ready")
    while True:
        try:
            op, args = inbox.recv()
        except (EOFError, OSError):
            return
        try:
            result = _OPS[op](*args)
        except Exception:  # noqa: BLE001 - math-verify raising on odd input means "not verified"
            result = None
        out.send(result)


_WORKER_CODE = "from r1.data.verify import _serve; _serve()"


class _Worker:
    """One worker process (a fresh interpreter: nothing of the caller's state, no re-run of
    its main module) and the two ends of its pipes."""

    def __init__(self):
        import os
        import subprocess
        import sys
        from multiprocessing.connection import Connection
        from pathlib import Path

        src = str(Path(__file__).resolve().parents[2])  # where this r1 is imported from
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
        self.stderr = tempfile.TemporaryFile()  # what it says if it cannot start
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        self.send_conn = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.recv_conn = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        self.ready = False

    def wait_ready(self, seconds: float) -> bool:
        """True once the worker has Math-Verify loaded; an R1Error if it cannot start."""
        if not self.ready and self.recv_conn.poll(max(seconds, 0.0)):
            try:
                self.ready = self.recv_conn.recv() == "ready"
            except (EOFError, OSError):
                self.process.wait()
                self.stderr.seek(0)
                said = self.stderr.read().decode(errors="replace").strip().splitlines()
                raise R1Error("the answer verifier (Math-Verify, in a worker process) could not start: "
                              + (said[-1] if said else f"exit code {self.process.returncode}")) from None
        return self.ready

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.send_conn.close()
        self.recv_conn.close()
        self.stderr.close()


class _Pool:
    """Worker processes, one per concurrent call up to MAX_WORKERS, kept between calls; one
    that overruns a call's timeout is killed and replaced. A worker still starting when a
    call's time runs out is kept for the next call."""

    def __init__(self, size: int):
        import os

        self._size, self._pid = size, os.getpid()
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)

    def _after_fork(self) -> None:
        """A forked child must not share its parent's workers (their pipes are the parent's)."""
        import os

        if os.getpid() != self._pid:
            self.__init__(self._size)

    def call(self, op: str, args: tuple, timeout: float) -> tuple[bool, object]:
        """(True, the worker's result), or (False, None) when it did not come within
        `timeout` seconds (waiting for a free or a starting worker included)."""
        deadline = time.monotonic() + timeout
        self._after_fork()
        if not self._slots.acquire(timeout=timeout):
            _STATS["timeouts"] += 1
            return False, None
        worker = None
        try:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            if worker is None or not worker.alive():
                worker = _Worker()
            if not worker.wait_ready(deadline - time.monotonic()):
                with self._lock:
                    self._idle.append(worker)  # still starting: the next call gets it
                worker = None
                _STATS["timeouts"] += 1
                return False, None
            # Math-Verify's own (SIGALRM) timeouts, a little shorter, let a worker survive slow
            # Python-level work; the hard deadline here covers the rest
            worker.send_conn.send((op, (*args, max(1, int(timeout * 0.8)))))
            if worker.recv_conn.poll(max(deadline - time.monotonic(), 0.0)):
                result = worker.recv_conn.recv()
                with self._lock:
                    self._idle.append(worker)
                worker = None
                return True, result
            _STATS["timeouts"] += 1
            log.debug("%s timed out after %.1fs: %r", op, timeout, [str(a)[:80] for a in args])
            return False, None
        except (OSError, EOFError) as e:  # a worker that died (out of memory, killed)
            _STATS["worker_errors"] += 1
            log.warning("a verification worker failed (%s): answer counted as not verified", e)
            return False, None
        finally:
            if worker is not None:  # overran or failed: it cannot be trusted with the next call
                worker.kill()
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for w in idle:
            w.kill()


_POOL = _Pool(MAX_WORKERS)
atexit.register(_POOL.close)
