"""Answer verification shared by the RL rewards and evaluation.

`answers_match` is the one verifier: exact string after normalisation, then numeric
comparison, then mathematical equivalence through math-verify with a timeout (its
timeouts rely on SIGALRM, so they are only armed in the main thread).
"""

from __future__ import annotations

import math
import re
import threading

from r1.rewards.registry import register

_NUM_RE = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")
TIMEOUT_S = 3


def normalize(text: str) -> str:
    s = text.strip()
    if s.startswith("$") and s.endswith("$") and len(s) > 1:
        s = s.strip("$").strip()
    s = s.rstrip(".").strip()
    if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    return s


def _as_float(text: str) -> float | None:
    return float(text) if _NUM_RE.match(text) else None


def answers_match(gold: str, prediction: str | None) -> bool:
    """True when `prediction` is the same answer as `gold` (strings, numbers or LaTeX)."""
    if prediction is None:
        return False
    g, p = normalize(str(gold)), normalize(str(prediction))
    if not p:
        return False
    if g == p:
        return True
    gf, pf = _as_float(g), _as_float(p)
    if gf is not None and pf is not None:
        return math.isclose(gf, pf, rel_tol=1e-9, abs_tol=1e-9)
    if len(p) > 1000:  # no verifier should chew on a wall of text
        return False
    from math_verify import parse, verify

    main = threading.current_thread() is threading.main_thread()
    timeout = TIMEOUT_S if main else None
    try:
        gold_parsed = parse(f"${g}$", parsing_timeout=timeout)
        pred_parsed = parse(f"${p}$", parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # math-verify raising on odd input means "not verified"
        return False


@register("accuracy")
def accuracy_reward(completions, examples, task):
    """1.0 when the task's verifier accepts the extracted answer, else 0.0."""
    return [1.0 if ok else 0.0 for ok in task.score_batch(list(completions), list(examples))]
