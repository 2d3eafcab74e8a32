"""Masking in any script: labelled names, phones, emails and addresses are found in Chinese,
Arabic and English text — glued to Chinese, behind Arabic prefix letters, inside sentences,
phones written with other separators — and pseudonyms come back. Property-based: hypothesis writes the texts."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import HumanMessage

from chamberlain.agents._labels import DataLabels, Masking, MaskStyle, unmask

KEY = b"pseudonym-key"

# Value and filler alphabets are disjoint, so a value can only be where the test put it.
ZH_FILLER = st.text(alphabet="请给先生女士电话邮箱收货退款谢谢您好，。：", min_size=1, max_size=6)
EN_WORDS = st.lists(st.sampled_from(["please", "call", "about", "the", "refund", "order", "at", "to"]), min_size=1)
EN_FILLER = EN_WORDS.map(lambda words: f" {' '.join(words)} ")
# Arabic: fillers of letters no name uses, glued on (the conjunction و, the prepositions ب and ك)
AR_FILLER = st.text(alphabet="بوشكرسنتقصزه ", min_size=1, max_size=8)
AR_NAME = st.sampled_from(["محمد", "فاطمة", "خديجة", "علي أحمد"])  # none inside another
ZH_SURNAME = st.sampled_from(["孙", "王", "李", "张", "刘", "陈", "欧阳"])
ZH_NAME = st.builds(str.__add__, ZH_SURNAME, st.text(alphabet="敏伟芳娜静磊洋艳", min_size=1, max_size=2))
EN_NAME = st.builds(str.__add__, st.sampled_from("ABCDJKLMOPSTW"), st.text(alphabet="aeiklmnorst", min_size=2))
EMAIL = st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,6})?@[a-z]{2,8}\.(cn|com|com\.cn)", fullmatch=True)
CITY, DISTRICT = st.sampled_from(["北京市", "上海市", "深圳市"]), st.sampled_from(["朝阳区", "浦东新区", "南山区"])
ROAD = st.sampled_from(["建国路", "世纪大道", "科技园路"])
ZH_ADDRESS = st.builds("{}{}{}{}号".format, CITY, DISTRICT, ROAD, st.integers(1, 999))
EN_ADDRESS = st.builds("{} {} Street".format, st.integers(1, 999), EN_NAME)
MOBILE = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
PHONE_FORMATS = [lambda d: d, lambda d: f"{d[:3]} {d[3:7]} {d[7:]}", lambda d: f"{d[:3]}-{d[3:7]}-{d[7:]}"]


@st.composite
def value(draw: st.DrawFn) -> tuple[str, str]:
    """A labelled value as the business system holds it, and as a text writes it."""
    kind = draw(st.sampled_from(["zh_name", "en_name", "ar_name", "email", "zh_address", "en_address", "phone"]))
    if kind == "phone":
        digits = draw(MOBILE)
        return draw(st.sampled_from(PHONE_FORMATS))(digits), draw(st.sampled_from(PHONE_FORMATS))(digits)
    kinds = {
        "zh_name": ZH_NAME,
        "en_name": EN_NAME,
        "ar_name": AR_NAME,
        "email": EMAIL,
        "zh_address": ZH_ADDRESS,
        "en_address": EN_ADDRESS,
    }
    held = draw(kinds[kind])
    return held, held


@st.composite
def document(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]]]:
    """Fillers and the values between them: Chinese text glued to the values, or English with spaces."""
    values = draw(st.lists(value(), min_size=1, max_size=5, unique_by=lambda v: re.sub(r"[ -]", "", v[0])))
    fillers = [draw(st.one_of(ZH_FILLER, EN_FILLER, AR_FILLER)) for _ in range(len(values) + 1)]
    return fillers, values


def written(fillers: list[str], parts: list[str]) -> str:
    return "".join(f + p for f, p in zip(fillers, parts, strict=False)) + fillers[-1]


@settings(max_examples=300, deadline=None)
@given(document(), st.sampled_from(["redact", "pseudonym"]))
def test_no_labelled_value_survives_masking_and_pseudonyms_come_back(
    doc: tuple[list[str], list[tuple[str, str]]], style: MaskStyle
) -> None:
    fillers, values = doc
    text = written(fillers, [as_written for _, as_written in values])
    labels = DataLabels().updated({}, {"pii": [held for held, _ in values]})
    sensitive = labels.found_in(text)
    assert sorted(sensitive["pii"]) == sorted({held for held, _ in values})  # found, however the phone is written
    masking = Masking({"pii": style}, key=KEY)
    (message,), restore = masking.apply([HumanMessage(text)], sensitive)
    masked = message.text
    assert masked == written(fillers, [masking.mask(held, "pii") for held, _ in values])
    for held, as_written in values:
        assert held not in masked and as_written not in masked
        if re.fullmatch(r"[\d -]+", held):
            assert re.sub(r"\D", "", held) not in re.sub(r"\D", "", masked)
    if style == "pseudonym":  # the answer gets the values back, as the business system holds them
        assert unmask(masked, restore) == written(fillers, [held for held, _ in values])
        if all(held == as_written for held, as_written in values):
            assert unmask(masked, restore) == text
