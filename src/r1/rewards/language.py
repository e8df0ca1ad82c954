"""Language consistency (R1 paper, section 2.3.3): the share of the chain of thought that
is written in the target language, word by word.

Words are runs of letters of one script; CJK ideographs and kana count one word per
character (they are written without spaces). Each word is assigned the language(s) its
script implies: Han → zh (ja when the text also has kana), kana → ja, Hangul → ko,
Cyrillic → ru/uk/bg..., Latin → en/fr/de/es/... Numbers, punctuation, LaTeX commands
(``\\frac``), code spans and one-letter Latin words (variables such as x, n) are not words.

Latin-script targets cannot be told apart by script alone; when the optional
`py3langid` package is installed (``pip install py3langid``), each Latin-script sentence
of three words or more is identified and its words count for the language found.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from r1.data.reasoning import split_reasoning
from r1.rewards.registry import register

LATIN = {"en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "fi", "pl", "cs", "tr", "id", "vi", "ro",
         "hu", "ca", "hr", "sk", "sl", "et", "lv", "lt", "ms", "sw", "tl"}
CYRILLIC = {"ru", "uk", "bg", "sr", "mk", "be", "kk"}
SCRIPT_LANGS = {"HAN": {"zh", "ja"}, "KANA": {"ja"}, "HANGUL": {"ko"}, "CYRILLIC": CYRILLIC, "LATIN": LATIN,
                "ARABIC": {"ar", "fa", "ur"}, "DEVANAGARI": {"hi", "mr", "ne"}, "GREEK": {"el"},
                "HEBREW": {"he"}, "THAI": {"th"}}
_CHAR_WORD = {"HAN", "KANA", "THAI"}  # scripts written without spaces between words

_STRIP = re.compile(r"```.*?```|`[^`]*`|\\[A-Za-z]+|https?://\S+", re.DOTALL)


@functools.lru_cache(maxsize=4096)
def _script(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    if name.startswith("CJK") or "IDEOGRAPH" in name:
        return "HAN"
    if name.startswith(("HIRAGANA", "KATAKANA")):
        return "KANA"
    if name.startswith("HANGUL"):
        return "HANGUL"
    for script in ("LATIN", "CYRILLIC", "ARABIC", "DEVANAGARI", "GREEK", "HEBREW", "THAI"):
        if name.startswith(script):
            return script
    return "OTHER"


def words(text: str) -> list[tuple[str, str]]:
    """(word, script) pairs in order, as counted by `language_consistency`."""
    out: list[tuple[str, str]] = []
    cur, cur_script = [], None
    for ch in _STRIP.sub(" ", text) + " ":
        s = _script(ch)
        if s is not None and s == cur_script and s not in _CHAR_WORD:
            cur.append(ch)
            continue
        if cur and not (cur_script == "LATIN" and len(cur) == 1):
            out.append(("".join(cur), cur_script))
        cur, cur_script = ([ch], s) if s is not None else ([], None)
        if s in _CHAR_WORD:  # one word per ideograph / kana / Thai letter
            out.append((ch, s))
            cur, cur_script = [], None
    return out


@functools.lru_cache(maxsize=1)
def _langid():
    try:
        import py3langid

        py3langid.classify("warm up the model")
        return py3langid.classify
    except Exception:  # not installed, or an incompatible version: script only
        return None


def _latin_sentence_langs(text: str) -> list[tuple[int, str]]:
    """(number of Latin words, language) per sentence, when py3langid is there."""
    ident = _langid()
    if ident is None:
        return []
    out = []
    for sentence in re.split(r"(?<=[.!?。！？])\s+|\n+", _STRIP.sub(" ", text)):
        latin = [w for w, s in words(sentence) if s == "LATIN"]
        if len(latin) >= 3:
            out.append((len(latin), ident(" ".join(latin))[0]))
    return out


def language_consistency(text: str, target: str = "en") -> float:
    """Share of the words of `text` written in `target` (an ISO 639-1 code), in [0, 1].
    Text without any word scores 1.0 (nothing inconsistent in it)."""
    target = target.lower().split("-")[0]
    ws = words(text)
    if not ws:
        return 1.0
    has_kana = any(s == "KANA" for _, s in ws)
    matched = 0
    for _, script in ws:
        langs = SCRIPT_LANGS.get(script, set())
        if script == "HAN":
            langs = {"ja"} if has_kana else {"zh", "ja"}
        matched += target in langs
    if target in LATIN:  # tell Latin-script languages apart sentence by sentence
        for n, lang in _latin_sentence_langs(text):
            if lang != target and lang in LATIN:
                matched -= n
    return max(0.0, min(1.0, matched / len(ws)))


@register("language")
def language_reward(completions, examples=None, task=None, target="en"):
    """Language consistency of the reasoning (the <think> part, or the whole text without one)."""
    out = []
    for c in completions:
        reasoning, _ = split_reasoning(c)
        out.append(language_consistency(reasoning or c, target))
    return out
