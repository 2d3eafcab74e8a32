"""myproject as a Chamberlain app: its tools, models and Cedar policies.

``chamberlain dev --app myproject.app`` and ``chamberlain worker --app myproject.app`` read
``tools()``, ``models()`` and ``POLICIES`` from here.
"""

from __future__ import annotations

import os
from pathlib import Path

from chamberlain.agents import GraphSpec, ModelCatalog, ModelRegistry, load_graph
from chamberlain.tools import ToolRegistry
from chamberlain.workflows import AuditLog, Gate, PolicyEngine, grant_secret

from myproject.adapter import get_order, refund

HERE = Path(__file__).parent
POLICIES = HERE / "policies"  # joins Chamberlain's shipped policies
GRAPH = HERE / "graph.yaml"


def tools() -> ToolRegistry:
    return ToolRegistry([get_order, refund])


def models() -> ModelRegistry:
    """The models of ``models.yaml``; the embedded one at ``$CHAMBERLAIN_EMBEDDED_URL`` when set."""
    catalog = ModelCatalog.load(HERE / "models.yaml")
    return ModelRegistry.from_catalog(catalog, embedded_url=os.environ.get("CHAMBERLAIN_EMBEDDED_URL"))


def refund_graph() -> GraphSpec:
    return load_graph(GRAPH, tools=tools())


def gate(tools: ToolRegistry) -> Gate:
    """The permission gate: with ``CHAMBERLAIN_GRANT_SECRET`` set, the deployment's (audit log at
    ``CHAMBERLAIN_AUDIT``); without it, the announced development gate in ``$CHAMBERLAIN_DATA``."""
    policies = PolicyEngine.load(POLICIES)
    if os.environ.get("CHAMBERLAIN_GRANT_SECRET"):
        audit = os.environ.get("CHAMBERLAIN_AUDIT", "sqlite:///.chamberlain/audit.sqlite")
        return Gate(policies, AuditLog(audit), tools, grant_secret())
    return Gate.development(tools, Path(os.environ.get("CHAMBERLAIN_DATA", ".chamberlain")), policies)
