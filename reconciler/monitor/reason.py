"""The ``--reason`` of a retraining run: one line of printable text.

Kept apart from :mod:`reconciler.monitor.retrain` so that the command layer can check a
reason without importing the data stack (pandas, numpy) that retraining needs.
"""

from __future__ import annotations

import unicodedata

from reconciler.core.diagnostics import ModelopsError

MAX_REASON_CHARS = 500
"""Longest ``--reason`` accepted (characters): one readable line in the commit message and
the ledger history; longer text belongs in the pull request (number from review)."""


def check_reason(reason: object) -> str:
    """The ``--reason`` of a retraining run, checked; surrounding spaces are trimmed.

    The reason is written into the proposal's commit message (``Reason: <reason>``), the
    ledger history, ``candidate.json`` and ``MODELOPS_REASON``. A newline or other control
    character could add forged lines (``Signed-off-by:``, ``Co-authored-by:`` trailers) to
    the commit, and bidirectional-override or other invisible format characters could make
    it read differently than it is, so only printable text is accepted
    (:meth:`str.isprintable`: no Unicode categories Cc, Cf, Cs, Co, Cn, Zl, Zp, and no
    spaces other than U+0020).

    Args:
        reason: the text given (``manual``, ``drift``, ``schedule``, or free text such as
            ``ticket ML-123: new fraud pattern``).

    Returns:
        The reason without leading/trailing spaces.

    Raises:
        ModelopsError: (exit 2) not a string, empty or only spaces, a character that is
            not printable (named with its code point and position), or longer than
            :data:`MAX_REASON_CHARS` characters.
    """
    allowed = (
        f"give one line of printable text, 1-{MAX_REASON_CHARS} characters (e.g. manual, "
        "drift, schedule or 'ticket ML-123: new fraud pattern')"
    )
    if not isinstance(reason, str):
        raise ModelopsError(f"--reason: expected text, got {type(reason).__name__}; {allowed}")
    text = reason.strip(" ")
    if not text.strip():
        raise ModelopsError(f"--reason: empty (or only whitespace); {allowed}")
    if len(text) > MAX_REASON_CHARS:
        raise ModelopsError(f"--reason: {len(text)} characters is too long; {allowed}")
    bad = next((i for i, ch in enumerate(text) if not ch.isprintable()), None)
    if bad is not None:
        char = text[bad]
        kinds = {"Cc": "control", "Cf": "format", "Cs": "surrogate", "Co": "private-use"}
        name = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}.get(char) or (
            f"the character {unicodedata.name(char)}"
            if unicodedata.name(char, "")
            else f"a {kinds.get(unicodedata.category(char), 'unassigned')} character"
        )
        raise ModelopsError(
            f"--reason: {name} (U+{ord(char):04X}) at character {bad + 1}; the reason goes "
            f"into the commit message and the ledger as one line; {allowed}"
        )
    return text
