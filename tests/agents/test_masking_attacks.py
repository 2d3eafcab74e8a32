"""Attacks on PII masking with non-Latin and tricky text: other digit scripts and separators,
international phones, Unicode e-mails, names in many scripts and normalisation forms, very
short values, idempotency, and what masking raises. The tests that pass pin what holds; the
strict xfails are gaps found, each with its cause named in the reason."""

from __future__ import annotations

import json
import logging
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from chamberlain.agents import GraphSpec, ModelRegistry, ScriptedChatModel, Tier
from chamberlain.agents._compiler import run_in_process
from chamberlain.agents._labels import DataLabels, Masking, MaskStyle, redact, strings_in, unmask
from chamberlain.agents._outcomes import StepOutcome
from chamberlain.server._runs import _Masker
from chamberlain.tools import ToolRegistry
from chamberlain.workflows._types import RunProgress, RunRequest, StepRecord

CARD = "4111 1111 1111 1111"
REDACT = Masking({"pii": "redact"}, key=b"k")


def masked(text: str, value: str) -> str:
    """``text`` as a model sees it when ``value`` is a labelled value; found and masked must agree."""
    held = {"pii": [value]}
    out = REDACT.mask_text(text, held)
    assert bool(DataLabels(values=held).found_in(text)) == (out != text)  # one rule for finding and masking
    return out


# -- 1. cards and phones in other digits and layouts -----------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("卡号４１１１ １１１１ １１１１ １１１１。", "卡号[pii]。"),  # full-width digits
        ("卡号４１１１\u3000１１１１\u3000１１１１\u3000１１１１", "卡号[pii]"),  # ideographic spaces
        ("رقم البطاقة ٤١١١ ١١١١ ١١١١ ١١١١", "رقم البطاقة [pii]"),  # Arabic-Indic digits
        ("شماره ۴۱۱۱ ۱۱۱۱ ۱۱۱۱ ۱۱۱۱", "شماره [pii]"),  # Persian digits
        ("カード4111－1111－1111－1111です", "カード[pii]です"),  # full-width hyphen-minus
        ("card 4111111111111111.", "card [pii]."),  # no separators
        ("card 4111 1111\n1111 1111 ok", "card [pii] ok"),  # split across a line break
        ("card 4111 1111\r\n1111 1111 ok", "card [pii] ok"),  # a CRLF break
        ("order 94111111111111111", "order 94111111111111111"),  # inside a longer number: not the card
    ],
)
def test_a_card_in_other_digits_and_layouts_is_masked(text: str, expected: str) -> None:
    assert masked(text, CARD) == expected


def test_a_card_in_json_nested_in_a_list_is_masked_in_content_and_tool_arguments() -> None:
    """A value quoted as JSON (in text, or in a tool call's nested arguments) is still text to mask."""
    content = json.dumps({"items": [{"pay": ["４１１１-１１１１-１１１１-１１１１"]}]}, ensure_ascii=False)
    call = AIMessage("", tool_calls=[{"name": "pay", "args": {"cards": [[CARD.replace(" ", "")]]}, "id": "1"}])
    (human, ai), _ = REDACT.apply([HumanMessage(content), call], {"pii": [CARD]})
    assert json.loads(human.text) == {"items": [{"pay": ["[pii]"]}]}
    assert isinstance(ai, AIMessage) and ai.tool_calls[0]["args"] == {"cards": [["[pii]"]]}


@pytest.mark.parametrize(
    "text",
    [
        "卡号4111ー1111ー1111ー1111",  # katakana prolonged sound mark, as Japanese IMEs type a dash
        "card 4111–1111–1111–1111",  # en dash, as word processors turn "-" into
        "card 4111‐1111‐1111‐1111",  # U+2010 hyphen
        "card 4111−1111−1111−1111",  # U+2212 minus sign
        "卡号4111、1111、1111、1111",  # ideographic comma
        "卡号4111，1111，1111，1111",  # full-width comma
        "card 4111 1111\r\n    1111 1111",  # a line break with the next line indented
    ],
)
def test_a_card_with_unicode_dashes_or_cjk_separators_is_masked(text: str) -> None:
    assert "[pii]" in masked(text, CARD)


@pytest.mark.parametrize(
    "text",
    ["電話０９０ー１２３４ー５６７８まで", "電話090−1234−5678まで", "電話 090–1234–5678 まで"],
)
def test_a_japanese_phone_with_long_vowel_mark_or_dash_separators_is_masked(text: str) -> None:
    assert "[pii]" in masked(text, "090-1234-5678")


# -- 2. international phones and Unicode e-mails ----------------------------------------------


@pytest.mark.parametrize(
    ("held", "text", "expected"),
    [
        ("+86 138 0013 8000", "致电 +86-138-0013-8000。", "致电 [pii]。"),
        ("+86 138 0013 8000", "致电＋８６ １３８ ００１３ ８０００", "致电[pii]"),
        ("+86 138 0013 8000", "tel (+86) 138 0013 8000", "tel ([pii]"),
        ("13800138000", "tel +86 138 0013 8000", "tel +86 [pii]"),  # the local number inside the international
        ("+81 90-1234-5678", "電話+81 90 1234 5678まで", "電話[pii]まで"),
        ("+81 90-1234-5678", "電話＋８１（９０）１２３４－５６７８", "電話[pii]"),
        ("+7 (912) 345-67-89", "звоните +7 912 345 67 89!", "звоните [pii]!"),
        ("+7 (912) 345-67-89", "звоните +79123456789", "звоните [pii]"),
    ],
)
def test_an_international_phone_is_masked_however_it_is_grouped(held: str, text: str, expected: str) -> None:
    assert masked(text, held) == expected


@pytest.mark.parametrize(
    ("held", "text"),
    [
        ("+86 138 0013 8000", "请拨 138 0013 8000"),  # held in E.164, written nationally
        ("+86 138 0013 8000", "请拨 0086 138 0013 8000"),  # 00 instead of +
        ("+81 90-1234-5678", "電話 090-1234-5678"),  # Japanese trunk 0
        ("+7 (912) 345-67-89", "звоните 8 (912) 345-67-89"),  # Russian trunk 8
        ("(+86) 138 0013 8000", "tel +86 138 0013 8000"),  # held with the + inside parentheses
    ],
)
def test_an_international_phone_is_masked_in_its_national_form(held: str, text: str) -> None:
    assert "8000" not in masked(text, held) and "5678" not in masked(text, held) and "67-89" not in masked(text, held)


@pytest.mark.parametrize(
    ("held", "text", "expected"),
    [
        ("用户@例子.中国", "请发邮件到用户@例子.中国谢谢", "请发邮件到[pii]谢谢"),  # IDN, glued to Chinese
        ("пользователь@пример.рф", "пишите на пользователь@пример.рф.", "пишите на [pii]."),
        ("wei.zhang@example.cn", "邮箱ｗｅｉ.ｚｈａｎｇ＠ｅｘａｍｐｌｅ.ｃｎ", "邮箱[pii]"),  # full-width
        ("josé@bücher.de", "mail jose\u0301@bu\u0308cher.de now", "mail [pii] now"),  # NFD in the text
        ("jose\u0301@bu\u0308cher.de", "mail josé@bücher.de now", "mail [pii] now"),  # NFD in the value
        ("用户@例子.中国", "用户@例子.中国网", "[pii]网"),  # glued: CJK has no word edges
    ],
)
def test_unicode_emails_are_masked(held: str, text: str, expected: str) -> None:
    assert masked(text, held) == expected


# -- 3. names and addresses in many scripts, and normalisation ------------------------------


@pytest.mark.parametrize(
    ("held", "text", "expected"),
    [
        ("Иванов Иван", "Клиент Иванов Иван звонил.", "Клиент [pii] звонил."),
        ("Иванов", "Иванов И. И.", "[pii] И. И."),
        ("москва, ул. Тверская, 7", "адрес: москва, ул. Тверская, 7.", "адрес: [pii]."),
        ("فاطمة الزهراء", "أرسل إلى وفاطمة الزهراء", "أرسل إلى و[pii]"),  # behind the conjunction و
        ("やまだ たろう", "やまだ たろうさまへ", "[pii]さまへ"),  # hiragana, glued
        ("ヤマダ タロウ", "ヤマダ タロウ様", "[pii]様"),  # katakana
        ("ガンダム", "ガンダム", "[pii]"),
        ("ガンダム", "カ\u3099ンタ\u3099ム", "[pii]"),  # kana with combining dakuten (NFD)
        ("김민수", "김민수님께 연락", "[pii]님께 연락"),  # hangul with a particle glued on
        ("서울시 강남구 테헤란로 1", "주소는 서울시 강남구 테헤란로 1입니다", "주소는 [pii]입니다"),
        ("สมชาย ใจดี", "คุณสมชาย ใจดีครับ", "คุณ[pii]ครับ"),  # Thai: no spaces between words
        ("Müller", "Frau Müller, bitte", "Frau [pii], bitte"),
        ("Ｚｈａｎｇ Ｗｅｉ", "Dear Zhang Wei,", "Dear [pii],"),  # full-width value, half-width text
    ],
)
def test_names_and_addresses_in_many_scripts_are_masked(held: str, text: str, expected: str) -> None:
    assert masked(text, held) == expected


@pytest.mark.parametrize(
    ("held", "text"),
    [
        ("ヤマダ タロウ", "ﾔﾏﾀﾞ ﾀﾛｳ様"),  # half-width katakana with ﾞ, as bank and legacy systems write names
        ("ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダ タロウ様"),
        ("김민수", unicodedata.normalize("NFD", "김민수님께")),  # Hangul in NFD (macOS file names, some IMEs)
        (unicodedata.normalize("NFD", "김민수"), "김민수님께"),
    ],
)
def test_half_width_kana_and_decomposed_hangul_are_the_same_name(held: str, text: str) -> None:
    out = masked(text, held)
    assert out.startswith("[pii]") and out.endswith(text[-1])


@pytest.mark.parametrize(
    ("held", "text"),
    [
        ("wei.zhang@example.cn", "mail Wei.Zhang@Example.CN today"),  # e-mail domains ignore case
        ("Zhang Wei", "PASSENGER ZHANG WEI"),  # passport / ticket style capitals
        ("Петров", "ПЕТРОВ П.П."),  # Cyrillic capitals
        ("Müller", "Frau MÜLLER"),
    ],
)
def test_a_value_in_other_case_is_masked(held: str, text: str) -> None:
    assert "[pii]" in masked(text, held)


@pytest.mark.xfail(
    strict=True, reason="_labels._edge keeps Cyrillic word edges: an inflected surname (Иванову, Ивановым) leaks"
)
def test_an_inflected_cyrillic_surname_is_masked() -> None:
    assert "Иванов" not in masked("Передайте Иванову и Ивановым", "Иванов")


def graph() -> GraphSpec:
    """``name`` is labelled pii; the model reads only ``message``, so its labels come from the values found."""
    return GraphSpec.model_validate(
        {
            "name": "masking-attacks",
            "state": {"name": {"labels": ["pii"]}, "message": {}, "summary": {}},
            "start": "read",
            "nodes": {
                "read": {
                    "type": "model",
                    "model": "m",
                    "prompt": "{message}",
                    "next": "done",
                    "output": {"summary": {}},
                },
                "done": {"type": "end"},
            },
        }
    )


async def labels_after_reading(name: str, message: str) -> dict[str, list[str]]:
    """Run the graph in process and return the labels its model step's output took."""
    models = ModelRegistry()
    models.register("m", ScriptedChatModel(replies=[json.dumps({"summary": "ok"})]), Tier.EDGE, trust=["pii"])
    trace: list[StepOutcome] = []
    result = await run_in_process(
        graph(), {"name": name, "message": message}, models=models, tools=ToolRegistry(), trace=trace
    )
    assert result.status == "completed"
    return trace[0].labels


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Иванов Иван", "звонил Иванов Иван"),
        ("Ｉｖａｎ", "call from Ivan today"),  # full-width in state, half-width in the message
        ("Mu\u0308ller", "Anruf von Müller"),  # NFD in state, NFC in the message
        ("김민수", "김민수님 전화"),
        ("สมชาย", "คุณสมชายโทรมา"),
        ("محمد", "اتصل ومحمد"),
    ],
)
async def test_a_labelled_state_value_quoted_elsewhere_labels_what_reads_it(name: str, message: str) -> None:
    """A model that reads only an unlabelled field which quotes a pii value works on pii: its output is pii."""
    assert await labels_after_reading(name, message) == {"summary": ["pii"]}


async def test_a_half_width_quote_of_a_labelled_name_labels_what_reads_it() -> None:
    assert await labels_after_reading("ヤマダ タロウ", "ﾔﾏﾀﾞ ﾀﾛｳ様から電話") == {"summary": ["pii"]}


# -- 4. very short values ---------------------------------------------------------------------


def test_a_two_character_name_is_masked_glued_and_a_one_character_one_is_not_remembered() -> None:
    """MIN_LENGTH: "王敏" is masked anywhere in Chinese; "王" alone is not a value (it would mask 王府井)."""
    assert masked("请王敏到王府井", "王敏") == "请[pii]到王府井"
    assert list(strings_in({"surname": "王", "name": "王敏", "n": 7})) == ["王敏"]
    assert masked("Li Wei met Lisa on Linux", "Li") == "[pii] Wei met Lisa on Linux"  # Latin edges hold


@pytest.mark.parametrize("value", ["\u200b\u200b", "\ufeff\ufeff", "\u00ad\u00ad"])
def test_a_labelled_value_of_only_zero_width_characters_does_not_break_masking(value: str) -> None:
    assert DataLabels(values={"pii": [value]}).found_in("王小明来电") == {}  # nothing in it to find
    assert REDACT.mask_text("王小明来电", {"pii": [value]}) == "王小明来电"


async def test_a_run_with_a_zero_width_only_labelled_input_completes() -> None:
    assert await labels_after_reading("\u200b\u200b", "王小明来电") == {"summary": []}


# -- what the runs API and console show (server/_runs._Masker) -------------------------------


def viewer_masker(name: Any, note: str) -> _Masker:
    """The masker of a run whose input ``name`` is pii and whose one step wrote ``note`` (unlabelled)."""
    spec = GraphSpec.model_validate(
        {"name": "g", "state": {"name": {"labels": ["pii"]}, "note": {}}, "start": "e", "nodes": {"e": {"type": "end"}}}
    )
    now = datetime.now(UTC)
    step = StepRecord(step_id="e/1", node="e", updates={"note": note}, next=None, started_at=now, ended_at=now)
    return _Masker(
        RunRequest(graph=spec, input={"name": name}), RunProgress(node=None, steps=[step], pending_approval=None), set()
    )


@pytest.mark.parametrize(
    ("name", "note", "shown"),
    [
        ("王小明", "客户王\u200b小明要退款", "客户[pii]要退款"),
        ("Иванов", "звонил Иванов И.", "звонил [pii] И."),
        ("+86 138 0013 8000", "电话＋８６ １３８－００１３－８０００", "电话[pii]"),
    ],
)
def test_a_viewer_without_clearance_sees_labelled_values_masked_in_other_fields(
    name: str, note: str, shown: str
) -> None:
    masker = viewer_masker(name, note)
    assert masker.fields({"name": name, "note": note}) == {"name": "[pii]", "note": shown}
    assert masker.text(f"failed: {note}") == f"failed: {shown}"  # a run's error passes the same masking


def test_a_whitespace_padded_labelled_value_is_masked_for_a_viewer() -> None:
    assert viewer_masker(" 王小明\n", "客户王小明要退款").fields({"note": "客户王小明要退款"}) == {
        "note": "客户[pii]要退款"
    }


def test_short_labelled_values_do_not_mangle_what_a_viewer_reads() -> None:
    masker = viewer_masker({"surname": "王", "given": "小明", "vip": 1}, "王府井 1 item")
    assert masker.fields({"note": "王府井 1 item"}) == {"note": "王府井 1 item"}


# -- 5. idempotency, errors and logs -------------------------------------------------------------

VALUES = {
    "pii": ["王小明", "Иванов Иван", "김민수", "สมชาย", "محمد", "用户@例子.中国", CARD, "+81 90-1234-5678"],
    "financial": ["1299.00"],
}
TEXT = (
    "王小明、Иванов Иван、김민수님、คุณสมชาย、ومحمد 用户@例子.中国 "
    "４１１１ １１１１ １１１１ １１１１ +81 90 1234 5678 1299.00"
)


@pytest.mark.parametrize("style", ["redact", "pseudonym", "last4"])
def test_masking_twice_is_masking_once_and_pseudonyms_come_back(style: MaskStyle) -> None:
    masking = Masking({"pii": style, "financial": "redact"}, key=b"k")
    once = masking.mask_text(TEXT, VALUES)
    assert masking.mask_text(once, VALUES) == once
    assert DataLabels(values=VALUES).found_in(once) == {}  # nothing labelled is left to find
    assert redact(redact(TEXT, VALUES), VALUES) == redact(TEXT, VALUES)
    if style == "pseudonym":
        (message,), restore = masking.apply([HumanMessage(TEXT)], VALUES)
        (again,), _ = masking.apply([message], VALUES)
        assert again.text == message.text == once
        back = unmask(message.text, restore)
        assert all(v in back for v in ["王小明", "Иванов Иван", "김민수", "สมชาย", "محمد", "用户@例子.中国"])


def test_masking_quotes_no_value_in_its_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """A mask style missing for a label is a KeyError naming the label, never a value; nothing is logged."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(KeyError) as raised:
        Masking({"financial": "redact"}, key=b"k").mask("王小明", "pii")
    assert "王小明" not in str(raised.value) and "王小明" not in repr(raised.value)
    Masking({"pii": "pseudonym"}, key=b"k").apply([HumanMessage(TEXT)], VALUES)
    DataLabels(values=VALUES).found_in(TEXT)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(v in logged for vs in VALUES.values() for v in vs)
