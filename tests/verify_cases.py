"""Labelled verification cases for tests/test_verify.py: (gold, text, label, kind).

Generated: numbers in many formats, fractions, intervals, sets, tuples, matrices, relations,
units and text around the answer, each right (label True) and perturbed (label False).
"""

from __future__ import annotations

import json
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def _wrap(answer: str) -> list[str]:
    """The ways a model writes an answer it has found."""
    return [
        answer, f"${answer}$", f"\\boxed{{{answer}}}", f"The answer is ${answer}$.",
        f"Final Answer: The final answer is ${answer}$. I hope it is correct.",
        f"<think>Let me work it out: 2 + 3 = 5, then 7.</think><answer>{answer}</answer>",
        f"So we get $\\boxed{{{answer}}}$. <|im_start|>user",
        "Step by step. " * 250 + f"Therefore the answer is $\\boxed{{{answer}}}$.",  # a long completion
    ]


def _numbers() -> list[tuple[str, str, bool, str]]:
    out = [(gold, s, True, "number") for gold, s in [  # a decimal comma only bare: in LaTeX "1,22" is a list
        ("0.5", "0,5"), ("1000.99", "1000,99"), ("1.22", "1,22"), ("3.14", "3,14")]]
    for gold, spellings, wrong in [
        ("7", ["7", "7.0", "07", "+7"], "8"),
        ("42", ["42", "42.00"], "24"),
        ("1000", ["1000", "1,000", "1 000", "1{,}000", "1\\,000"], "1001"),
        ("14916", ["14916", "14,916", "14{,}916", "14 916"], "14961"),
        ("1234567", ["1234567", "1,234,567", "1 234 567"], "1234576"),
        ("-3", ["-3", "−3", "-3.0"], "3"),
        ("0.5", ["0.5", ".5", "\\frac{1}{2}", "1/2", "\\dfrac12"], "0.25"),
        ("1000.99", ["1000.99", "1,000.99", "1 000.99"], "1000.9"),
        ("1.22", ["1.22", "1.220"], "1.2"),
        ("3.14", ["3.14", "3.140"], "3.15"),
        ("\\frac{9}{4}", ["2.25", "9/4", "\\frac94"], "\\frac{4}{9}"),
    ]:
        out += _written(gold, spellings, [wrong], "number")
    return out


def _written(gold: str, rights: list[str], wrongs: list[str], kind: str) -> list[tuple[str, str, bool, str]]:
    """Every right and wrong spelling in every way of writing it, labelled."""
    return [(gold, text, label, kind) for spellings, label in ((rights, True), (wrongs, False))
            for s in spellings for text in _wrap(s)]


def _structures() -> list[tuple[str, str, bool, str]]:
    cases = [
        # (gold, right spellings, wrong spellings, kind)
        ("\\frac{3}{4}", ["3/4", "\\dfrac{3}{4}", "\\frac34", "0.75", "\\tfrac{3}{4}"], ["4/3", "\\frac{3}{5}"], "fraction"),
        ("\\frac{\\pi}{2}", ["\\pi/2", "\\frac{\\pi}{2}", "\\dfrac{\\pi}{2}"], ["\\pi", "2\\pi"], "fraction"),
        ("2\\sqrt{3}", ["2\\sqrt{3}", "2 \\sqrt 3", "\\sqrt{12}", "2\\sqrt3"], ["3\\sqrt{2}", "\\sqrt{6}"], "radical"),
        ("[-2, 7)", ["[-2,7)", "[-2, 7)", "\\left[-2, 7\\right)"], ["(-2, 7)", "[-2, 7]"], "interval"),
        ("(1, 2]", ["(1,2]", "(1, 2]"], ["[1, 2]", "(1, 3]"], "interval"),
        ("(-\\infty, 3)", ["(-\\infty,3)", "(-\\infty, 3)"], ["(-\\infty, 3]", "(3, \\infty)"], "interval"),
        ("\\{1, 2\\}", ["\\{1,2\\}", "\\{2, 1\\}"], ["\\{1, 3\\}", "\\{1\\}"], "set"),
        ("(7, 6)", ["(7,6)", "(7, 6)"], ["(6, 7)", "(7, 5)"], "tuple"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", ["(3, \\pi/2)", "(3, \\frac{\\pi}{2})"], ["(3, \\pi)", "(\\pi/2, 3)"], "tuple"),
        ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
         ["\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}",
          "\\left[\\begin{array}{cc}1&2\\\\3&4\\end{array}\\right]"],
         ["\\begin{pmatrix}1&2\\\\4&3\\end{pmatrix}", "\\begin{bmatrix}2&1\\\\3&4\\end{bmatrix}"], "matrix"),
        ("\\begin{pmatrix} -1 \\\\ 2 \\end{pmatrix}", ["\\begin{pmatrix}-1\\\\2\\end{pmatrix}", "\\begin{bmatrix}-1\\\\2\\end{bmatrix}"],
         ["\\begin{pmatrix}1\\\\2\\end{pmatrix}"], "matrix"),
        ("x \\geq 5", ["x >= 5", "x \\ge 5", "x\\geq5"], ["x > 5", "x \\leq 5"], "relation"),
        ("x < 3", ["x \\lt 3", "x<3"], ["x \\leq 3", "x > 3"], "relation"),
        ("x \\neq 2", ["x != 2", "x \\ne 2"], ["x = 2"], "relation"),
        ("y = 2x + 3", ["y = 2x+3", "y=3+2x"], ["y = 3x + 2"], "equation"),
        ("x^2+2x+1", ["(x+1)^2", "x^2 + 2x + 1", "1+2x+x^2"], ["(x-1)^2", "x^2+1"], "expression"),
        ("90^\\circ", ["90", "90^\\circ", "90^{\\circ}"], ["45^\\circ", "180"], "unit"),
        ("5", ["5 \\text{ cm}", "5\\text{cm}", "5 \\mbox{ meters}"], ["6 \\text{ cm}"], "unit"),
        ("10\\%", ["10\\%", "10"], ["20\\%"], "percent"),
        ("\\infty", ["\\infty"], ["-\\infty"], "infinity"),
    ]
    return [case for gold, rights, wrongs, kind in cases for case in _written(gold, rights, wrongs, kind)]


def _prose() -> list[tuple[str, str, bool, str]]:
    return [
        ("18", "She has 3 dozen, that is 18 eggs in all. The answer is 18.", True, "prose"),
        ("18", "Janet sells 16 - 3 - 4 = 9 duck eggs a day, making 9 * 2 = $18 a day.", True, "prose"),
        ("14916", "Final Answer: The final answer is $14{,}916$. I hope it is correct.", True, "prose"),
        ("(7, 6)", "The intersection is $(7, 6)$. <|im_start|>user\nWhat is", True, "prose"),
        ("\\{1, 2\\}", "The solutions are $\\boxed{1}$ and $\\boxed{2}$.", True, "several boxed"),
        ("\\{1, 2\\}", "\\boxed{1}, \\boxed{2}", True, "several boxed"),
        ("\\{1, 2\\}", "\\boxed{1}", False, "several boxed"),
        ("4", "The final answer is 3. Wait, let me recheck: \\boxed{4}", True, "boxed first"),
        ("3", "The final answer is 3. Wait, let me recheck: \\boxed{4}", False, "boxed first"),
        ("5", "<think>maybe 7, or 9</think><answer>5</answer>", True, "tags"),
        ("7", "<think>maybe 7, or 9</think><answer>5</answer>", False, "tags"),
        ("\\text{(C)}", "\\text{(C)}", True, "text"),
    ]


def _fixtures() -> list[tuple[str, str, bool, str]]:
    """The completions of the suite's fixture files, with the answer each one gives as gold
    (unlabelled: the extraction fixtures take the last of several boxed answers, Math-Verify
    reads them as a set)."""
    out = []
    for case in json.loads((GOLDEN / "extraction.json").read_text()):
        if case["expect"] is not None and case["fallback"] != "last_number":
            out.append((case["expect"], case["text"], None, "fixture"))
    for case in json.loads((GOLDEN / "consensus.json").read_text()):
        for a in case["answers"]:
            if a:
                out.append((case["gold"], a, None, "fixture"))  # unlabelled: compared with Math-Verify only
    return out


def cases() -> list[tuple[str, str, bool | None, str]]:
    return _numbers() + _structures() + _prose() + _fixtures()
