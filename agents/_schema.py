"""The JSON schema of graph files, generated from :class:`~chamberlain.agents._spec.GraphSpec`.

It ships inside the package (``graph.schema.json`` next to this module) so an installed
project can point its editor at it; shipped graphs name it on their first line::

    # yaml-language-server: $schema=../../agents/graph.schema.json

The committed file is regenerated with :func:`write_graph_schema` (``chamberlain graph schema
--write``); a test fails when it no longer matches the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chamberlain.agents._spec import GraphSpec

SCHEMA_FILE = Path(__file__).with_name("graph.schema.json")
SCHEMA_HEADER = "# yaml-language-server: $schema="
"""How a graph file names its schema on its first line, for editors (the YAML language server)."""


def graph_json_schema() -> dict[str, Any]:
    """The schema of a graph file's data: what the loader accepts before its cross-reference checks."""
    schema = GraphSpec.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Chamberlain agent graph",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def graph_schema_text() -> str:
    """The schema as the committed file holds it."""
    return json.dumps(graph_json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_graph_schema(*copies: Path) -> list[Path]:
    """Write the schema to the package's file and to ``copies`` (e.g. ``docs/graph.schema.json``);
    returns the files whose content changed."""
    text = graph_schema_text()
    changed = []
    for path in (SCHEMA_FILE, *copies):
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
