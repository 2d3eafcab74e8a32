"""Both graphs load and pass the static safety checks against the app's tools and policies."""

from __future__ import annotations

from chamberlain.agents import dump_graph, load_graph, parse_graph, review_graph
from chamberlain.workflows import PolicyEngine

from myproject import app
from myproject.graphs import order_status


def test_the_yaml_graph_passes_the_safety_checks() -> None:
    spec = app.refund_graph()
    policies = PolicyEngine.load(app.POLICIES)
    assert review_graph(spec, app.tools(), app.models(), bounded=policies.bounded) == []
    assert spec.nodes["refund"].tool == "myproject.refund"


def test_the_python_graph_builds_and_exports_to_yaml() -> None:
    spec = order_status(app.tools())
    assert parse_graph(dump_graph(spec)) == spec  # what `chamberlain graph export` prints loads back
    assert load_graph(app.GRAPH).name == "refund-request"
