"""What a customer's message states in so many words: the order IDs it contains, the number of
items it asks for, whether it asks for everything in the order, whether it threatens legal
action or a payment dispute, and whether it is unclear what it asks for.

A careful employee never guesses an order number, never shrinks "return 10" to one item, hands
a threat to a person instead of paying it out, and asks a person when the request says "don't",
names two orders, or counts two ways. The small model's extraction is read against these
literal facts, which are exact where the model is not: an ID the message does not contain is
cleared, and a quantity the customer wrote wins over the model's.
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
_EN_ASKED = re.compile(  # "return one", "refund just 2": a count the request itself states
    r"\b(?:return|refund|send back)\s+(?:only\s+|just\s+)?([0-9]{1,2}|" + "|".join(_EN_NUMBERS) + r")\b"
    r"(?!\s*(?:[-/.:]|days?\b|weeks?\b|months?\b|years?\b|hours?\b))",
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


# "Don't cancel", "I don't want a refund", 不要取消, 别退, 不是都退: an action the message says not to take.
_NEGATED = re.compile(
    r"\b(?:don'?t|do not|never|not)\s+(?:[a-z']+\s+){0,3}(?:cancel|refund|return|send (?:it |them )?back)"
    r"|(?:不要|不用|不想|不必|无需|不需要|别|先别|不是)[^，。,.!?！？]{0,6}(?:取消|退)",
    re.IGNORECASE,
)
# "All but one", "everything except line 1", 除了, 半个: a count the customer leaves to be worked out.
_PARTIAL = re.compile(
    r"\b(?:all but|except|other than|apart from|half)\b|除了|除去|一半|半[个件双条套盒瓶支台份只包箱]", re.IGNORECASE
)
_NEGATIVE_COUNT = re.compile(r"-\s*[0-9]+\s+(?:of|items?|pieces?|pairs?|units?)\b", re.IGNORECASE)


class Reading(BaseModel):
    text: str = Field(max_length=4000)
    order_id: str | None = Field(None, description="the order ID the model read, checked against the text")


class Stated(BaseModel):
    order_id: str | None = Field(description="the model's ID if the text contains it, else the only ID it contains")
    order_ids: list[str]
    quantity: int | None = Field(description="the number of items the text asks for, if it says")
    everything: bool = Field(description="the text asks for everything in the order")
    threat: bool
    unclear: bool = Field(
        description="a person should read it: it says not to act, names two orders, or counts two ways"
    )


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
    found = _counts(text)
    if found:
        return min(found)[1]
    return 2 if _BOTH.search(text) else None


def _counts(text: str) -> list[tuple[int, int]]:
    """Every count of goods the text states, with where it stands."""
    found: list[tuple[int, int]] = []
    for match in (*_EN_QUANTITY.finditer(text), *_EN_ASKED.finditer(text)):
        word = match.group(1).lower()
        found.append((match.start(), int(word) if word.isdigit() else _EN_NUMBERS[word]))
    for match in _ZH_QUANTITY.finditer(text):
        if (number := _zh_number(match.group(1))) is not None:
            found.append((match.start(), number))
    return found


def unclear(text: str) -> bool:
    """Whether a careful employee would ask before acting: the text says not to act, names more
    than one order, states two different counts (or none that can be taken: 0, half, "all but
    one", a negative), or asks for everything but something."""
    counts = {count for _, count in _counts(text)}
    return bool(
        _NEGATED.search(text)
        or len(set(ORDER_ID.findall(text))) > 1
        or len(counts) > 1
        or 0 in counts
        or _PARTIAL.search(text)
        or _NEGATIVE_COUNT.search(text)
    )


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
        unclear=unclear(text),
    )


@tool("text.stated", action="text.stated.read")
async def read_stated(args: Reading, ctx: ToolContext) -> Stated:
    """What a customer's message states literally: order IDs, a count of items, everything, a threat."""
    return state(args.text, args.order_id)
