"""Intent routing by nearest exemplar (WordLlama, weights from its wheel), and its escalation."""

from __future__ import annotations

import json

from chamberlain.agents import (
    ClassifyCall,
    ExemplarClassifier,
    GraphSpec,
    ModelRegistry,
    ScriptedChatModel,
    StepContext,
    Tier,
    run_in_process,
)
from tests.support import toolbox

CLASSES = {
    "refund": ["I want a refund", "please refund my order", "money back", "我要退货", "退款"],
    "status": ["where is my order", "has my parcel shipped", "track my package", "我的快递到哪了"],
}


def classify(text: str) -> tuple[str, float]:
    reply = ExemplarClassifier().classify(
        ClassifyCall(step=StepContext(run_id="r", node="n", visit=1), text=text, classes=CLASSES)
    )
    assert set(reply.scores) == set(CLASSES) and reply.margin >= 0
    return reply.label, reply.margin


def test_nearest_exemplar_picks_the_class_in_both_languages() -> None:
    assert classify("can I get my money back for A1002")[0] == "refund"
    assert classify("where is my parcel A1002")[0] == "status"
    assert classify("退货退款")[0] == "refund"


def spec(min_margin: float) -> GraphSpec:
    return GraphSpec.model_validate(
        {
            "name": "route",
            "state": {"message": {"type": "str", "labels": ["pii"]}, "intent": {"type": "str"}},
            "start": "intent",
            "nodes": {
                "intent": {
                    "type": "classify",
                    "input": "message",
                    "write": "intent",
                    "classes": CLASSES,
                    "min_margin": min_margin,
                    "cascade": ["edge"],
                    "next": "done",
                },
                "done": {"type": "end"},
            },
        }
    )


async def test_a_low_margin_escalates_to_the_cascade() -> None:
    model = ScriptedChatModel(replies=[json.dumps({"intent": "status"})])
    models = ModelRegistry()
    models.register("edge", model, Tier.EDGE, trust=["pii"])
    confident = await run_in_process(spec(0.0), {"message": "money back please"}, models=models, tools=toolbox.tools())
    assert confident.output["intent"] == "refund" and model.calls == []
    unsure = await run_in_process(spec(5.0), {"message": "money back please"}, models=models, tools=toolbox.tools())
    assert unsure.output["intent"] == "status" and len(model.calls) == 1  # the model decided
    schema = model.calls[0][1]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["intent"]["enum"] == ["refund", "status"]
