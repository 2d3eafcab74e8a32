"""The JSON schema of graph files: generated from the code, shipped, named by every shipped graph."""

from __future__ import annotations

import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from chamberlain.agents import graph_json_schema, write_graph_schema
from chamberlain.agents._schema import SCHEMA_FILE, SCHEMA_HEADER, graph_schema_text

ROOT = Path(__file__).parents[2]
SHIPPED = [*sorted((ROOT / "tests/graphs").glob("*.yaml")), *sorted((ROOT / "examples").glob("*/graph.yaml"))]
VALIDATOR = jsonschema.Draft202012Validator(graph_json_schema())


@pytest.mark.parametrize("path", [SCHEMA_FILE, ROOT / "docs/graph.schema.json"], ids=["package", "docs"])
def test_the_committed_schema_is_the_one_the_code_generates(path: Path) -> None:
    assert path.read_text(encoding="utf-8") == graph_schema_text(), "run `chamberlain graph schema --write`"


def test_the_schema_ships_inside_the_package() -> None:
    assert SCHEMA_FILE.parent.name == "agents" and SCHEMA_FILE.is_file()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*.json" in package_data["*"]


def test_regeneration_writes_only_what_changed(tmp_path: Path) -> None:
    copy = tmp_path / "graph.schema.json"
    copy.write_text("{}")
    assert write_graph_schema(copy) == [copy]  # the package's file is current, the copy was stale
    assert copy.read_text(encoding="utf-8") == graph_schema_text()
    assert write_graph_schema(copy) == []


def test_the_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(graph_json_schema())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_graph_names_the_shipped_schema_on_its_first_line(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(SCHEMA_HEADER), f"{path}: first line should be {SCHEMA_HEADER}<relative path>"
    assert (path.parent / first.removeprefix(SCHEMA_HEADER)).resolve() == SCHEMA_FILE.resolve()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_graph_is_valid_against_the_schema(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in VALIDATOR.iter_errors(data)]
    assert errors == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"nodes": {"x": {"type": "rout", "next": [{"to": "x"}]}}}, "nodes.x"),
        ({"nodes": {"x": {"type": "tool", "tool": "t", "next": "x", "tmeout": "5s"}}}, "nodes.x"),
        ({"state": {"备注": {"type": "text"}}}, "state.备注.type"),
        ({"name": "has spaces"}, "name"),
    ],
)
def test_the_schema_rejects_what_the_loader_rejects(change: dict[str, object], where: str) -> None:
    graph = {"name": "g", "state": {}, "start": "x", "nodes": {"x": {"type": "end"}}} | change
    assert VALIDATOR.is_valid({"name": "g", "state": {}, "start": "x", "nodes": {"x": {"type": "end"}}})
    paths = [".".join(map(str, e.path)) for e in VALIDATOR.iter_errors(graph)]
    assert paths and all(p.startswith(where) for p in paths), paths
