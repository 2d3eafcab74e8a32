"""What a customer's message states in so many words: the order IDs it contains, the number of
items it asks for, whether it asks for everything in the order, and whether it threatens legal
action or a payment dispute.

A careful employee never guesses an order number, never shrinks "return 10" to one item, and
hands a threat to a person instead of paying it out. The small model's extraction is read
against these literal facts, which are exact where the model is not: the model may pick which of
the written order IDs is meant, but an ID the message does not contain is cleared, and a
quantity the customer wrote wins over the model's.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from chamberlain.tools import ToolContext, tool

ORDER_ID = re.compile(r"(?<![A-Za-z0-9])A[0-9]{4}(?![0-9])")  # ASCII only: a full-width ID is not one

_EN_NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
_ZH_DIGITS = {"一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
# A number counts as a quantity only next to a word that counts goods: "5000 CNY", "size 42",
# "11.11" and "双十一" are not quantities.
_EN_QUANTITY = re.compile(
    r"\b([0-9]+|" + "|".join(_EN_NUMBERS) + r")\s+(?:of\s+(?:the|them|these|those|my)\b|items?\b|pieces?\b|"
    r"pcs\b|pairs?\b|units?\b|bottles?\b|boxes?\b|sets?\b|packs?\b)",
    re.IGNORECASE,
)
_ZH_QUANTITY = re.compile(r"([0-9]+|[一二两俩三四五六七八九十]+)\s*(?:件|个|双|条|套|盒|瓶|支|台|份|只|包|箱)")
# "Everything", "the whole order", 全部, 所有东西 — not "all unopened", not 所有规则 ("all the rules").
_EVERYTHING = re.compile(
    r"\b(?:everything|all (?:of )?(?:the |my )?(?:items|things|goods)|(?:the )?(?:whole|entire) order)\b"
    r"|全部|整单|所有(?:的)?(?:东西|商品|货)|都退",
    re.IGNORECASE,
)
_BOTH = re.compile(r"\bboth\b|两.{0,3}都|俩都", re.IGNORECASE)
# Legal action, a payment dispute, a regulator or the press: a person answers, whatever the request.
_THREAT = re.compile(
    r"\b(?:sue|suing|sued|lawsuit|lawyers?|attorneys?|solicitors?|court|legal action|small claims|"
    r"charge ?backs?|dispute|disputing|consumer (?:protection|council|rights)|trading standards|"
    r"ombudsman|report (?:you|this)|go to the (?:press|media|police))\b"
    r"|起诉|告你们|打官司|律师|法院|仲裁|消协|消费者协会|12315|工商|拒付|报警|曝光|媒体",
    re.IGNORECASE,
)


class Reading(BaseModel):
    text: str = Field(max_length=4000)
    order_id: str | None = Field(None, description="the order ID the model read, checked against the text")


class Stated(BaseModel):
    order_id: str | None = Field(description="the model's ID if the text contains it, else the only ID it contains")
    order_ids: list[str]
    quantity: int | None = Field(description="the number of items the text asks for, if it says")
    everything: bool = Field(description="the text asks for everything in the order")
    threat: bool


def _zh_number(text: str) -> int | None:
    """一…九十九 (and 两): small Chinese numerals, enough for a count of items."""
    if text.isdigit():
        return int(text)
    if "十" in text:
        tens, _, ones = text.partition("十")
        return (_ZH_DIGITS.get(tens, 0) if tens else 1) * 10 + (_ZH_DIGITS.get(ones, 0) if ones else 0)
    return _ZH_DIGITS.get(text) if len(text) == 1 else None


def stated_quantity(text: str) -> int | None:
    """The first count of goods the text states ("10 of the items", "退20件", "both pairs" → 2)."""
    found: list[tuple[int, int]] = []
    for match in _EN_QUANTITY.finditer(text):
        word = match.group(1).lower()
        found.append((match.start(), int(word) if word.isdigit() else _EN_NUMBERS[word]))
    for match in _ZH_QUANTITY.finditer(text):
        if (number := _zh_number(match.group(1))) is not None:
            found.append((match.start(), number))
    if found:
        return min(found)[1]
    return 2 if _BOTH.search(text) else None


def state(text: str, order_id: str | None = None) -> Stated:
    """The literal facts of ``text``, and the model's ``order_id`` kept only where the text holds it."""
    written = ORDER_ID.findall(text)
    if order_id not in written:
        order_id = written[0] if len(set(written)) == 1 else None
    return Stated(
        order_id=order_id,
        order_ids=written,
        quantity=stated_quantity(text),
        everything=bool(_EVERYTHING.search(text)),
        threat=bool(_THREAT.search(text)),
    )


@tool("text.stated", action="text.stated.read")
async def read_stated(args: Reading, ctx: ToolContext) -> Stated:
    """What a customer's message states literally: order IDs, a count of items, everything, a threat."""
    return state(args.text, args.order_id)
