"""Counts in words for people: ``1 partition``, ``2 partitions``.

Used by every human report (the doctor's table, the demo), so none says "1 partitions".
"""

from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` (with thousands separators) and ``noun``, plural unless the count is 1 (``nouns``
    for irregular plurals)."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"
