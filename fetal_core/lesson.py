"""Class mode without Streamlit: students' nicknames, lessons and their presets, and Part I runs recorded as
trials of the lesson's "by hand" study, so the class's hand-tuned runs live in the storage like any study.

A lesson is a name; its runs are the trials of the study ``hand_study_name(lesson)``. Which lesson is current,
its presets and its class study are user attrs of one control study (``CONTROL_STUDY``) in the same storage:
the storage stays the one source of truth for every server process and every student.
"""

from __future__ import annotations

import unicodedata

from .limits import ConfigError
from .text import clip

NICKNAME_MAX = 24
NICKNAME_PUNCTUATION = " -_"


def check_nickname(value: object) -> str:
    """``value`` as a nickname (1 to 24 letters, digits, spaces, '-' or '_'; outer spaces dropped), or a
    ``ConfigError`` saying what is wrong. Markdown, HTML and control characters are all refused here."""
    if not isinstance(value, str):
        raise ConfigError("nickname: type a nickname.")
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise ConfigError("nickname: type a nickname (1 to 24 letters, digits, spaces, '-' or '_').")
    if len(name) > NICKNAME_MAX:
        raise ConfigError(f"nickname: {len(name)} characters; use at most {NICKNAME_MAX}.")
    bad = sorted({c for c in name if not (c.isalpha() or c.isdecimal() or c in NICKNAME_PUNCTUATION)})
    if bad:
        shown = " ".join(repr(c) if c.isprintable() else f"U+{ord(c):04X}" for c in bad[:5])
        raise ConfigError(f"nickname: {clip(shown, 40)} not allowed; use letters, digits, spaces, '-' or '_'.")
    return name
