"""The fenced code blocks of a docs page, in order, with what the page asks of each.

A block marked by the HTML comment line right above it (invisible on the site):
``<!-- docs-test: background URL -->`` runs in the background until the page ends, and the
next block waits until URL answers. A ``python`` block with ``title="path"`` is a file the
reader writes: the test writes it there. Every other ``bash`` and ``python`` block is run.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(
    r"(?:^<!-- docs-test: (?P<mark>[^>]*?) -->\n)?"  # an optional mark on the line above
    r"^(?P<indent>[ ]*)```(?P<lang>\w+)(?P<attrs>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$",
    re.MULTILINE | re.DOTALL,
)
_TITLE = re.compile(r'title="([^"]+)"')


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    body: str
    title: str | None
    mark: str | None

    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text("utf-8")
    found = []
    for match in _FENCE.finditer(text):
        title = _TITLE.search(match["attrs"])
        body = textwrap.dedent(match["body"])
        line = text.count("\n", 0, match.start("indent")) + 1
        found.append(Block(page.name, line, match["lang"], body, title[1] if title else None, match["mark"]))
    return found
