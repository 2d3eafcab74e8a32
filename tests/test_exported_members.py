"""The public surface of each layer changes only on purpose."""

import inspect
from types import ModuleType

import pytest

from chamberlain import agents, server, tools, workflows


@pytest.mark.parametrize("layer", [agents, tools, workflows, server], ids=lambda m: m.__name__)
def test_all_is_exactly_the_public_names(layer: ModuleType) -> None:
    """As httpx's test does: what a layer's ``__init__`` offers is what ``__all__`` lists, nothing more."""
    public = {n for n in dir(layer) if not n.startswith("_") and not inspect.ismodule(getattr(layer, n))}
    assert set(layer.__all__) == public


def test_agents_exports() -> None:
    for name in agents.__all__:
        assert hasattr(agents, name), name
    assert {"GraphSpec", "load_graph", "GraphPlan", "run_in_process", "compile_to_langgraph", "ModelRegistry"} <= set(
        agents.__all__
    )


def test_tools_exports() -> None:
    assert tools.__all__ == [
        "REFERENCE_DAY",
        "SINGLES_DAY",
        "Effect",
        "McpDeclaration",
        "McpServer",
        "Resource",
        "ToolAdapter",
        "ToolContext",
        "ToolError",
        "ToolInputInvalid",
        "ToolRegistry",
        "ToolRejected",
        "ToolUnavailable",
        "UnknownTool",
        "business_tools",
        "crm_backend",
        "erp_backend",
        "from_langchain",
        "mcp_tools",
        "seed",
        "to_langchain",
        "tool",
    ]


def test_workflows_exports() -> None:
    for name in workflows.__all__:
        assert hasattr(workflows, name), name
    assert {
        "GraphWorkflow",
        "create_worker",
        "start_run",
        "DevServer",
        "RunRequest",
        "RunResult",
        "GatedExecutor",
        "ChamberlainPlugin",
        "run_graph",
        "run_gated_in_process",
    } <= set(workflows.__all__)


def test_internals_live_in_private_modules() -> None:
    """Every module of a layer but its ``__init__`` is private: users import from the layer."""
    from pathlib import Path

    root = Path(__file__).parents[1]
    for layer in ("agents", "tools", "workflows", "server"):
        public = [p.name for p in (root / layer).glob("*.py") if p.name != "__init__.py" and not p.name.startswith("_")]
        assert public == [], f"{layer}: {public}"


def test_layers_point_one_way() -> None:
    """agents and tools never import workflows or server; workflows never imports server."""
    from pathlib import Path

    root = Path(__file__).parents[1]
    rules = {"agents": ("workflows", "server"), "tools": ("agents", "workflows", "server"), "workflows": ("server",)}
    for package, forbidden in rules.items():
        for path in (root / package).rglob("*.py"):
            for line in path.read_text().splitlines():
                stripped = line.strip()
                if stripped.startswith(("import ", "from ")):
                    module = stripped.split()[1]
                    assert module.split(".")[0] not in forbidden, f"{path.relative_to(root)}: {stripped}"


def test_one_name_per_concept() -> None:
    """An approver's answer is one class wherever it is offered; the gate's answer is another."""
    assert workflows.ApprovalAnswer is agents.ApprovalAnswer
    offered = set(agents.__all__) | set(workflows.__all__) | set(server.__all__)
    assert not offered & {"Decision", "ApprovalDecision", "DecisionBody", "GateVerdict"}
