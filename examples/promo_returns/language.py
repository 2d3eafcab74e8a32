"""The language a customer wrote in, decided by the characters they used, not by a model.

A reply goes out in this language. Embeddings are cross-lingual (they place "退货" near
"return"), so they are the wrong tool here; counting Han characters against Latin letters is
exact for the two languages the helpdesk serves.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from chamberlain.tools import ToolContext, tool


class Text(BaseModel):
    text: str = Field(max_length=4000)


class Language(BaseModel):
    language: Literal["zh", "en"]


def language_of(text: str) -> Literal["zh", "en"]:
    """``zh`` when Han characters are at least a third of the letters, else ``en``."""
    han = sum("\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" for c in text)
    latin = sum(c.isascii() and c.isalpha() for c in text)
    return "zh" if han and han * 3 >= han + latin else "en"


@tool("text.language", action="text.language.detect")
async def detect_language(args: Text, ctx: ToolContext) -> Language:
    """The language of a customer's message: zh or en."""
    return Language(language=language_of(args.text))
