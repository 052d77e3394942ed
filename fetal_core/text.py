"""User-controlled text made safe to show."""

from __future__ import annotations


def clip(value: object, limit: int = 80) -> str:
    """``value`` as one line of at most ``limit`` characters (an ellipsis marks the cut), for error messages."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"
