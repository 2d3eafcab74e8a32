"""The promo-returns graph written in Python is the YAML one: same spec, same export."""

from __future__ import annotations

from pathlib import Path

import pytest

from chamberlain.agents import GraphSpec, dump_graph, load_graph, parse_graph
from chamberlain.examples.promo_returns import app
from chamberlain.examples.promo_returns.graph import graph
from chamberlain.tools import ToolRegistry
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.embedded import EmbeddedErp

YAML = Path(app.__file__).with_name("graph.yaml")


@pytest.fixture
def tools(tmp_path: Path) -> ToolRegistry:
    """The app's tools, over an empty embedded shop (the checks read only their declarations)."""
    erp = EmbeddedErp(f"sqlite:///{tmp_path / 'shop.sqlite'}")
    return app.tools_over(erp, EmbeddedCrm(erp.engine), labels_dir=tmp_path / "labels")


@pytest.fixture
def built(tools: ToolRegistry) -> GraphSpec:
    return graph().build(tools=tools)


def test_the_python_graph_equals_the_yaml_one(built: GraphSpec, tools: ToolRegistry) -> None:
    from_yaml = load_graph(YAML, tools=tools)
    assert from_yaml.schema_ is not None  # the file names its schema; the Python graph has no file
    assert built == from_yaml.model_copy(update={"schema_": None})


def test_the_python_graph_exports_to_yaml_that_reads_back_the_same(built: GraphSpec, tools: ToolRegistry) -> None:
    exported = dump_graph(built)
    assert "$schema" not in exported
    assert parse_graph(exported, tools=tools) == built


def test_the_classifier_margin_and_the_support_reply_survive_the_export(built: GraphSpec) -> None:
    """The two features the triage rests on: an unsure classifier sends the message to a person,
    and that person's reply is what the run answers with."""
    exported = dump_graph(built)
    assert "margin: margin" in exported
    support = built.nodes["support"]
    assert support.type == "approval" and support.output is not None
    assert support.output["reply"].max_length == 2000
