"""Intent classification: the exemplar classifier node vs the bare embedded small model.

    python -m benchmarks.intent_eval [--out DIR] [--write]

On the labelled set in ``data/intents.yaml`` (≥40 messages, Chinese and English), compares
the classifier node (nearest WordLlama exemplar) with SmolLM2-135M asked to pick the class,
both free-form and with the class constrained by JSON schema. Also measures the embedded
model's speed: prompt tokens/s (a long prompt, one token out) and generated tokens/s.
Writes ``intent_eval.{json,png}`` to the results folder (``--write``: to ``docs/benchmarks/``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import yaml
from langchain_core.messages import HumanMessage, SystemMessage
from rich.console import Console
from rich.progress import track
from rich.table import Table

from benchmarks.output import add_arguments, save, stamp_figure
from chamberlain.agents import (
    EMBEDDED_MODEL,
    ClassifyCall,
    EmbeddedModelServer,
    ExemplarClassifier,
    PrivateChatModel,
    StepContext,
)

DATA = Path(__file__).parent / "data" / "intents.yaml"
STEP = StepContext(run_id="eval", node="intent", visit=1)


def load() -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    data = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    return data["exemplars"], [(text, label) for text, label in data["messages"]]


async def ask(model: PrivateChatModel, classes: list[str], text: str, constrained: bool) -> str:
    system = f"Classify the customer message as exactly one of: {', '.join(classes)}."
    if constrained:
        schema = {
            "type": "object",
            "properties": {"intent": {"type": "string", "enum": classes}},
            "required": ["intent"],
        }
        fmt = {"type": "json_schema", "json_schema": {"name": "intent", "schema": schema}}
        reply = await model.ainvoke(
            [SystemMessage(system + " Answer in JSON."), HumanMessage(text)], response_format=fmt
        )
        return str(json.loads(reply.text)["intent"])
    reply = await model.ainvoke([SystemMessage(system + " Answer with the one word only."), HumanMessage(text)])
    words = reply.text.lower()
    return next((c for c in classes if c in words), "none")


async def tokens_per_second(model: PrivateChatModel, runs: int = 5) -> float:
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        reply = await model.ainvoke("Write a short story about a shop that never closes.")
        seconds = time.perf_counter() - start
        assert reply.usage_metadata
        rates.append(reply.usage_metadata["output_tokens"] / seconds)
    return statistics.median(rates)


async def prompt_tokens_per_second(model: PrivateChatModel, runs: int = 5) -> float:
    """Prompt processing: a long prompt (~400 tokens), one token generated."""
    prompt = " ".join(["The customer bought a kettle in the 11.11 sale and wants to return it."] * 25)
    rates = []
    for i in range(runs):
        start = time.perf_counter()
        reply = await model.ainvoke(f"{i} {prompt}")  # a different start each time: no prompt cache reuse
        seconds = time.perf_counter() - start
        assert reply.usage_metadata
        rates.append(reply.usage_metadata["input_tokens"] / seconds)
    return statistics.median(rates)


async def main(console: Console) -> dict[str, Any]:
    exemplars, messages = load()
    classes = list(exemplars)
    server = EmbeddedModelServer().start()
    try:
        constrained = PrivateChatModel(
            base_url=server.base_url, model=EMBEDDED_MODEL, structured_output="json_object", max_tokens=24
        )
        free = PrivateChatModel(base_url=server.base_url, model=EMBEDDED_MODEL, max_tokens=8)
        classifier = ExemplarClassifier()
        right = {"classifier node (exemplars)": 0, "small model, JSON enum": 0, "small model, free-form": 0}
        timing = {name: 0.0 for name in right}
        for text, label in track(messages, description="classifying", console=console):
            for name, run in (
                ("classifier node (exemplars)", None),
                ("small model, JSON enum", constrained),
                ("small model, free-form", free),
            ):
                start = time.perf_counter()
                if run is None:
                    guess = classifier.classify(ClassifyCall(step=STEP, text=text, classes=exemplars)).label
                else:
                    guess = await ask(run, classes, text, constrained=run is constrained)
                timing[name] += time.perf_counter() - start
                right[name] += guess == label
        speed = await tokens_per_second(
            PrivateChatModel(base_url=server.base_url, model=EMBEDDED_MODEL, max_tokens=128)
        )
        prompt_speed = await prompt_tokens_per_second(
            PrivateChatModel(base_url=server.base_url, model=EMBEDDED_MODEL, max_tokens=1)
        )
    finally:
        server.stop()
    n = len(messages)
    summary = {
        "messages": n,
        "classes": classes,
        "accuracy": {k: round(v / n, 3) for k, v in right.items()},
        "ms_per_message": {k: round(v / n * 1000, 1) for k, v in timing.items()},
        "embedded_tokens_per_second": round(speed, 1),
        "embedded_prompt_tokens_per_second": round(prompt_speed, 1),
    }
    table = Table(
        "method", "accuracy", "ms/message", title=f"intent routing, {n} labelled messages, {len(classes)} classes"
    )
    for name in right:
        table.add_row(name, f"{right[name]}/{n} = {right[name] / n:.0%}", f"{summary['ms_per_message'][name]}")
    console.print(table)
    console.print(f"embedded SmolLM2-135M: {speed:.1f} generated, {prompt_speed:.1f} prompt tokens/s (median of 5)")
    return summary


def chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    names, values = list(summary["accuracy"]), [v * 100 for v in summary["accuracy"].values()]
    fig, ax = plt.subplots(figsize=(7.5, 2.6))
    bars = ax.barh(names, values, color=["#2b6cb0", "#a0aec0", "#cbd5e0"])
    ax.bar_label(bars, labels=[f"{v:.0f}%" for v in values])
    ax.set_xlim(0, 110)
    ax.set_xlabel("accuracy (%)")
    ax.set_title(
        f"Intent routing, {summary['messages']} messages (zh+en), {len(summary['classes'])} classes", fontsize=10
    )
    ax.invert_yaxis()
    stamp_figure(fig, summary)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    console = Console()
    save("intent_eval", asyncio.run(main(console)), args, chart)


if __name__ == "__main__":
    cli()
