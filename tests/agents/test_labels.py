"""Masking by label, and labels following values through a run in process."""

from __future__ import annotations

import json

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from chamberlain.agents import GraphSpec, ModelRegistry, ScriptedChatModel, Tier
from chamberlain.agents._compiler import run_in_process
from chamberlain.agents._labels import DataLabels, Masking, redact, strings_in, unmask
from chamberlain.agents._plan import GraphPlan
from chamberlain.tools import ToolRegistry

EMAIL, CARD = "wei.zhang@example.cn", "4111 1111 1111 1111"
SENSITIVE = {"pii": [EMAIL, CARD]}


def test_each_label_is_masked_in_its_own_style_and_pseudonyms_come_back() -> None:
    masking = Masking({"pii": "pseudonym"}, key=b"k")
    messages, restore = masking.apply(
        [SystemMessage("Be brief."), HumanMessage(f"Mail {EMAIL} about {CARD}.")], SENSITIVE
    )
    text = messages[1].text
    assert EMAIL not in text and CARD not in text and text.count("PII_") == 2
    assert masking.mask(EMAIL, "pii") == masking.mask(EMAIL, "pii") != masking.mask(CARD, "pii")
    assert Masking({"pii": "pseudonym"}, key=b"other").mask(EMAIL, "pii") != masking.mask(EMAIL, "pii")
    answer = f"Sent to {masking.mask(EMAIL, 'pii')}."
    assert unmask({"reply": answer}, restore) == {"reply": f"Sent to {EMAIL}."}
    assert Masking({"pii": "last4"}, key=b"").mask_text(f"card {CARD}", SENSITIVE) == "card ****1111"
    assert Masking({"pii": "redact"}, key=b"").mask_text(f"{EMAIL}, {EMAIL}x", SENSITIVE) == f"[pii], {EMAIL}x"


def test_tool_call_arguments_are_masked_too() -> None:
    call = AIMessage("", tool_calls=[{"name": "crm.find", "args": {"email": EMAIL}, "id": "1"}])
    (masked,), _ = Masking({"pii": "redact"}, key=b"").apply([call], SENSITIVE)
    assert isinstance(masked, AIMessage) and masked.tool_calls[0]["args"] == {"email": "[pii]"}


def test_a_viewer_sees_what_their_clearance_covers() -> None:
    text = f"Refund 1299.0 to {EMAIL}?"
    values = {"pii": [EMAIL], "financial": ["1299.0"]}
    assert redact(text, values) == "Refund [financial] to [pii]?"
    assert redact(text, values, clearance=["pii"]) == f"Refund [financial] to {EMAIL}?"


def test_strings_are_collected_from_nested_values() -> None:
    assert list(strings_in({"a": [EMAIL, {"b": 1299.5}], "c": True, "d": "x"})) == [EMAIL, "1299.5"]


def spec() -> GraphSpec:
    return GraphSpec.model_validate(
        {
            "name": "labels",
            "state": {"message": {"labels": ["pii"]}, "intent": {}, "summary": {}, "urgent": {"type": "bool"}},
            "start": "read",
            "nodes": {
                "read": {
                    "type": "model",
                    "model": "m",
                    "prompt": "{message}",
                    "next": "done",
                    "output": {"intent": {"enum": ["refund", "other"]}, "summary": {}, "urgent": {"type": "bool"}},
                },
                "done": {"type": "end"},
            },
        }
    )


async def test_a_model_output_carries_its_input_labels_unless_it_is_a_choice() -> None:
    reply = {"intent": "refund", "summary": f"{EMAIL} wants money back", "urgent": True}
    models = ModelRegistry()
    models.register("m", ScriptedChatModel(replies=[json.dumps(reply)]), Tier.EDGE, trust=["pii"])
    trace: list = []
    await run_in_process(
        spec(), {"message": f"I am {EMAIL}, refund!"}, models=models, tools=ToolRegistry(), trace=trace
    )
    assert trace[0].labels == {"intent": [], "summary": ["pii"], "urgent": []}
    plan = GraphPlan(spec())
    labels = plan.merge_labels(plan.initial_labels(plan.initial_state({"message": f"I am {EMAIL}"})), trace[0])
    assert labels.values["pii"] == [f"I am {EMAIL}", f"{EMAIL} wants money back"]
    assert labels.found_in(f"forward: {EMAIL} wants money back") == {"pii": [f"{EMAIL} wants money back"]}
    assert DataLabels().of(["message"], plan.declared) == ["pii"]


def test_chinese_text_is_masked_where_a_name_touches_it() -> None:
    redacting = Masking({"pii": "redact"}, key=b"k")
    assert redacting.mask_text("请给孙敏先生", {"pii": ["孙敏"]}) == "请给[pii]先生"
    assert redacting.mask_text("邮箱wei.zhang@example.cn请回复", SENSITIVE) == "邮箱[pii]请回复"
    glued = {"pii": ["山田", "김민수", "สมชาย"]}
    assert redacting.mask_text("山田さん、김민수에게、สมชายครับ", glued) == "[pii]さん、[pii]에게、[pii]ครับ"
    pseudonyms = Masking({"pii": "pseudonym"}, key=b"k")
    (masked,), restore = pseudonyms.apply([HumanMessage("请给孙敏先生回电")], {"pii": ["孙敏"]})
    assert "孙敏" not in masked.text and unmask(masked.text, restore) == "请给孙敏先生回电"


def test_latin_words_keep_the_whole_word_rule() -> None:
    redacting = Masking({"pii": "redact"}, key=b"k")
    text = "Ann wrote the Annual report for Anne and Ann先生."
    assert redacting.mask_text(text, {"pii": ["Ann"]}) == "[pii] wrote the Annual report for Anne and [pii]先生."
    assert redacting.mask_text("Léa and Léane", {"pii": ["Léa"]}) == "[pii] and Léane"


def test_a_phone_is_found_with_any_grouping_but_not_inside_a_longer_number() -> None:
    held = {"pii": ["138 0013 8000"]}
    text = "电话13800138000，或 138-0013-8000, Tel13800138000; order 913800138000"
    assert DataLabels(values=held).found_in(text) == held
    assert Masking({"pii": "redact"}, key=b"k").mask_text(text, held) == (
        "电话[pii]，或 [pii], Tel[pii]; order 913800138000"
    )
    pseudonyms = Masking({"pii": "pseudonym"}, key=b"k")
    assert pseudonyms.mask("138 0013 8000", "pii") == pseudonyms.mask("138-0013-8000", "pii")
    assert pseudonyms.mask("138 0013 8000", "pii") != pseudonyms.mask("+86 138 0013 8000", "pii")


def test_an_arabic_name_behind_a_prefix_letter_is_found_and_masked_alike() -> None:
    held = {"pii": ["محمد أحمد"]}
    redacting = Masking({"pii": "redact"}, key=b"k")
    for text, masked in (
        ("وصل طلب ومحمد أحمد", "وصل طلب و[pii]"),  # the conjunction و glued to the name
        ("اتصل بمحمد أحمد غدا", "اتصل ب[pii] غدا"),  # the preposition ب
        ("שלום ומוחמד", "שלום ומוחמד"),  # nothing of the value: nothing found, nothing masked
    ):
        assert redacting.mask_text(text, held) == masked
        assert bool(DataLabels(values=held).found_in(text)) == (masked != text)  # found exactly when masked
    assert redacting.mask_text("שלום ולדוד", {"pii": ["דוד"]}) == "שלום ול[pii]"  # Hebrew prefixes ו and ל
    assert DataLabels(values={"pii": ["Ann"]}).found_in("the Annual report") == {}  # found like masked, Latin too


def test_full_width_digits_and_zero_width_characters_hide_nothing() -> None:
    redacting = Masking({"pii": "redact"}, key=b"k")
    cases = {
        "call １３８００１３８０００ now，ok": ("13800138000", "call [pii] now，ok"),  # the rest kept as written
        "call ١٣٨٠٠١٣٨٠٠٠": ("13800138000", "call [pii]"),  # Arabic-Indic digits
        "客户王\u200b小明要求退款": ("王小明", "客户[pii]要求退款"),
        "Frau Mu\u0308ller schreibt": ("Müller", "Frau [pii] schreibt"),  # decomposed ü
        "寄到北京市朝阳区建国路８８号": ("北京市朝阳区建国路88号", "寄到[pii]"),
    }
    for text, (value, masked) in cases.items():
        assert redacting.mask_text(text, {"pii": [value]}) == masked
        assert DataLabels(values={"pii": [value]}).found_in(text) == {"pii": [value]}
    assert redacting.mask_text("Ａnn wrote the Ａnnual report", {"pii": ["Ann"]}) == "[pii] wrote the Ａnnual report"
