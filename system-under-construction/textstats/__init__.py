"""textstats: small statistics over plain text."""

from __future__ import annotations

import re
from collections import Counter

WORD = re.compile(r"[A-Za-z0-9']+")


def words(text: str) -> list[str]:
    """The words of `text`, lower-cased, in order."""
    return [w.lower() for w in WORD.findall(text)]


def word_count(text: str) -> int:
    return len(words(text))


def line_count(text: str) -> int:
    """Lines as a reader counts them: a final line without a newline still counts."""
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def top_words(text: str, n: int = 3) -> list[tuple[str, int]]:
    """The `n` most frequent words, ties broken alphabetically."""
    counts = Counter(words(text))
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
