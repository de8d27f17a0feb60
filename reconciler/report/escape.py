"""Make untrusted text safe to insert into GitHub-flavoured Markdown.

Every spec value, policy message, plan field value, build or smoke error and waiver
field that reaches a comment goes through one of three functions, chosen by where it
lands: :func:`text` for running text (also table cells and list items), :func:`code`
for an inline code span, :func:`fence` for a fenced code block. No value can add HTML,
close a code span or a ``<details>`` block, start a block of its own, or notify anyone.
The rules (CommonMark 0.31.2, GFM 0.29, GitHub's mention filter) are in
``docs/report.md``.
"""

from __future__ import annotations

import re

#: Backslash-escaped in running text: ``\\`` (so the other escapes hold), a backtick (it
#: would open a code span that pairs with one of the comment's own), ``*`` (emphasis
#: pairing with the comment's ``**bold**``), ``[`` and ``]`` (links and images: no
#: ``[text](url)`` or ``![](tracking-pixel)``) and ``|`` (a table cell separator; GFM
#: 0.29 §4.10 also honours ``\\|`` inside code spans in tables). ``_`` is left alone:
#: identifiers such as ``min_replicas`` are common, and intraword ``_`` never starts
#: emphasis (CommonMark §6.2).
_TEXT_ESCAPES = {
    "\\": "\\\\",
    "`": "\\`",
    "*": "\\*",
    "[": "\\[",
    "]": "\\]",
    "|": "\\|",
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
}
_TEXT_TABLE = str.maketrans(_TEXT_ESCAPES)
#: GitHub's mention position: start of text or a non-word character, then ``@`` and an
#: ASCII letter or digit (``@login``, ``@org/team``).
_MENTION = re.compile(r"(?<![A-Za-z0-9_])@(?=[A-Za-z0-9])")
ZWJ = "\u200d"
_BACKTICKS = re.compile(r"`+")


def one_line(value: object) -> str:
    """``str(value)`` with every whitespace run folded to one space, stripped.

    ``None`` becomes ``""``. Folding removes ``\\n``, ``\\r``, tabs and the Unicode line
    and paragraph separators (CommonMark §2.2 treats ``\\r`` alone as a line ending).
    """
    if value is None:
        return ""
    return " ".join(str(value).split())


_CONTROLS = {c: f"\\x{c:02x}" for c in range(32) if c != 9}
_CONTROLS.update({10: "\\n", 13: "\\r", 0x85: "\\x85", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def visible_controls(value: str) -> str:
    """``value`` on one line, with line breaks and other control characters (not tabs)
    shown as Python-style escapes: ``"a\\nb"`` → ``a\\nb`` as four visible characters.

    For plain-text output read by terminals and CI logs: a newline inside a spec value
    would otherwise start a line the log parser trusts (``::error ...`` in GitHub
    Actions).
    """
    return value.translate(_CONTROLS)


def neutralise_mentions(value: str) -> str:
    """Insert a zero-width joiner after every ``@`` that GitHub would read as a mention.

    ``"ping @org/security-team"`` → ``"ping @\\u200dorg/security-team"`` (renders the
    same, notifies nobody); ``"sec@example.com"`` is unchanged.
    """
    return _MENTION.sub("@" + ZWJ, value)


def text(value: object) -> str:
    """``value`` as one line of Markdown running text that renders as the value itself.

    Folds whitespace (:func:`one_line`), backslash-escapes ``\\ ` * [ ] |``, turns
    ``& < >`` into entities and neutralises @mentions (:func:`neutralise_mentions`).
    Safe in paragraphs, list items, headings, block quotes, table cells and inside
    inline HTML such as ``<sub>``. ``None`` gives ``""``.

    >>> text("a <b> | `c` @team")
    'a &lt;b&gt; \\\\| \\\\`c\\\\` @\\u200dteam'
    """
    return neutralise_mentions(one_line(value).translate(_TEXT_TABLE))


def longest_backtick_run(value: str) -> int:
    """Length of the longest run of consecutive backticks in ``value`` (0 if none)."""
    return max((len(m) for m in _BACKTICKS.findall(value)), default=0)


def code(value: object, *, table: bool = False) -> str:
    """``value`` as one inline code span that no character of the value can close.

    The delimiter is a backtick run one longer than the longest run in the value
    (CommonMark §6.1: a span closes only at a run of the same length). When the value
    starts or ends with a backtick, or starts and ends with a space, it is padded with
    one space on each side, which the renderer strips again (§6.1). Whitespace is
    folded (:func:`one_line`). With ``table=True``, ``|`` becomes ``\\|`` (GFM §4.10:
    inside a table row the cell split runs before inline parsing, and ``\\|`` is the
    escaped pipe, also within code spans). HTML and mentions need no escaping: neither
    is interpreted inside a code span.

    Returns ``""`` for ``None`` or an empty value (there is no empty code span); the
    caller chooses a placeholder.

    >>> code("a`b")
    '``a`b``'
    """
    body = one_line(value)
    if not body:
        return ""
    if table:
        body = body.replace("|", "\\|")
    ticks = "`" * (longest_backtick_run(body) + 1)
    if body.startswith("`") or body.endswith("`") or (body[0] == " " and body[-1] == " "):
        body = f" {body} "
    return f"{ticks}{body}{ticks}"


def fence(body: str, info: str = "") -> str:
    """``body`` as a fenced code block: opening fence line, the body, closing fence line.

    The fence is a backtick run of at least 3 and one longer than the longest run
    anywhere in ``body`` (CommonMark §4.5: the block closes only at a run at least as
    long as the opening one), so no line of the body can close it. ``info`` (e.g.
    ``"diff"``) must not contain a backtick or a line break.

    Raises:
        ValueError: ``info`` contains a backtick or a line break (§4.5 forbids a
            backtick in the info string of a backtick fence).
    """
    if "`" in info or "\n" in info or "\r" in info:
        raise ValueError(f"fence info string {info!r} must not contain a backtick or newline")
    ticks = "`" * max(3, longest_backtick_run(body) + 1)
    return f"{ticks}{info}\n{body.rstrip(chr(10))}\n{ticks}"
