"""The scenario's two graphs, loaded once outside the workflow sandbox (the workflow imports this
module passed through). They live with the workflow, never in its input: whoever starts a run
chooses the order and the quantity, not what the agent may do."""

from __future__ import annotations

from pathlib import Path

from chamberlain.agents import load_graph

DRAFT = load_graph(Path(__file__).with_name("graph.yaml"))
COMMIT = load_graph(Path(__file__).with_name("commit.yaml"))
