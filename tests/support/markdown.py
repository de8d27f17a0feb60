"""Checks of rendered Markdown as GitHub would see it (no tests here).

The Markdown is parsed with markdown-it-py (CommonMark with the GFM table rule, raw HTML
on, as GitHub allows it). :func:`assert_safe` is the structural check shared by the PR
comment and policy report tests: only the comment's own HTML tags, balanced
``<details>``, no @mention outside code.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

TEAM = "@org/security-team"
#: Closes <details>, injects an image with a script, pings a team, and carries a backtick
#: run longer than the comment's own ``` fence.
HOSTILE = f"</details><img src=x onerror=alert(1)> {TEAM} ```` x"
MENTION = re.compile(r"(?<![A-Za-z0-9_])@[A-Za-z0-9]")


def md() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True}).enable("table")


def walk(tokens):
    for tok in tokens:
        yield tok
        if tok.children:
            yield from walk(tok.children)


def parse(markdown: str) -> list:
    return list(walk(md().parse(markdown)))


def raw_html(tokens) -> list[str]:
    """Every raw HTML fragment that reaches the output (blocks and inline tags)."""
    return [t.content.strip() for t in tokens if t.type in ("html_block", "html_inline")]


def visible_text(tokens) -> str:
    """Text GitHub scans for mentions: inline text outside code spans and fences."""
    return "\n".join(t.content for t in tokens if t.type == "text")


def assert_safe(markdown: str, *, details: int) -> list:
    """The structural checks shared by every test; returns the parsed tokens."""
    tokens = parse(markdown)
    html = md().render(markdown)
    raw = raw_html(tokens)
    assert "<img" not in html and "onerror" not in "".join(raw)
    opened = [h for h in raw if h.startswith("<details>")]
    closed = [h for h in raw if h == "</details>"]
    assert len(opened) == len(closed) == details, raw
    assert html.count("<details>") == html.count("</details>") == details
    for fragment in raw:  # only the comment's own tags
        assert re.fullmatch(
            r"<!-- modelops-plan -->|<details><summary>[\w ()]+</summary>|</details>"
            r"|<sub>|</sub>",
            fragment,
        ), fragment
    text = visible_text(tokens)
    assert not MENTION.search(text), [m.group() for m in MENTION.finditer(text)]
    return tokens
