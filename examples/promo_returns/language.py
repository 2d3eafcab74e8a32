"""The language a customer wrote in, decided by the characters they used, not by a model.

A reply goes out in this language. Embeddings are cross-lingual (they place "退货" near
"return"), so they are the wrong tool here; counting Han characters against Latin letters is
exact for the two languages the helpdesk serves. A message with letters of another script —
Japanese kana, Korean, Cyrillic, Arabic, Thai — is ``other``: a person answers it (Japanese
kanji alone would pass for Chinese, and a cancel in it was read as a return).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from chamberlain.tools import ToolContext, tool


class Text(BaseModel):
    text: str = Field(max_length=4000)


_OTHER_SCRIPT = re.compile(  # kana, Hangul, Cyrillic, Arabic, Thai
    "[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f\uac00-\ud7af\u1100-\u11ff\u0400-\u04ff\u0600-\u06ff\u0e00-\u0e7f]"
)


class Language(BaseModel):
    language: Literal["zh", "en", "other"]


def language_of(text: str) -> Literal["zh", "en", "other"]:
    """``other`` with letters of a script the helpdesk does not write in; else ``zh`` when Han
    characters are at least a third of the letters, else ``en``."""
    if _OTHER_SCRIPT.search(text):
        return "other"
    han = sum("\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" for c in text)
    latin = sum(c.isascii() and c.isalpha() for c in text)
    return "zh" if han and han * 3 >= han + latin else "en"


@tool("text.language", action="text.language.detect")
async def detect_language(args: Text, ctx: ToolContext) -> Language:
    """The language of a customer's message: zh, en, or other (for a person)."""
    return Language(language=language_of(args.text))
