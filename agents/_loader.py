"""Load graph specs from YAML with errors that point at the line to fix, and write them back.

PyYAML's composer keeps each node's position; we build the plain data and an index of
``path → line`` from the same tree, so both Pydantic's errors and the cross-reference
checks of :mod:`agents.validation` come back as ``returns.yaml:14: … — did you mean …?``.
Loading is strict: a key given twice is an error (PyYAML would silently keep the last one,
dropping a route). A ``review`` (such as the static safety checks of :mod:`agents.safety`)
is located the same way; its warnings are issued as :class:`GraphWarning` through
:mod:`warnings`. Every way to get a spec — a file, text, a Python-built graph — runs the
same checks, in :func:`run_checks`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from chamberlain.agents import _spec as spec_module
from chamberlain.agents._exceptions import GraphSpecError, GraphWarning, SpecIssue
from chamberlain.agents._spec import GraphSpec
from chamberlain.agents._validation import Tools, did_you_mean, validate_graph

PathKey = tuple[str | int, ...]
Review = Callable[[GraphSpec], list[SpecIssue]]
"""Checks beyond the spec's own, given the spec once it is valid (e.g. the static safety review)."""


def load_graph(source: str | Path, *, tools: Tools | None = None, review: Review | None = None) -> GraphSpec:
    """Load and fully validate the graph in the YAML file ``source``.

    Raises :class:`GraphSpecError` listing every problem with its file and line.
    """
    path = Path(source)
    return parse_graph(path.read_text(encoding="utf-8"), filename=str(path), tools=tools, review=review)


def parse_graph(
    text: str, *, filename: str = "<graph>", tools: Tools | None = None, review: Review | None = None
) -> GraphSpec:
    """Like :func:`load_graph`, from YAML text."""
    try:
        data, lines, duplicates = _compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise GraphSpecError(
            [SpecIssue(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=filename, line=line)]
        ) from exc
    if not isinstance(data, dict):
        raise GraphSpecError([SpecIssue("a graph file must be a mapping", file=filename, line=1)])
    if duplicates:
        raise GraphSpecError([replace(issue, file=filename) for issue in duplicates])
    try:
        spec = GraphSpec.model_validate(data)
    except ValidationError as exc:
        raise GraphSpecError([_locate(spec_issue(e), filename, lines) for e in exc.errors()]) from exc
    return run_checks(spec, tools=tools, review=review, locate=lambda issue: _locate(issue, filename, lines))


def check_graph(spec: GraphSpec, *, tools: Tools | None = None, review: Review | None = None) -> GraphSpec:
    """Validate a graph built in Python with the checks :func:`load_graph` runs; errors carry dotted paths."""
    return run_checks(spec, tools=tools, review=review)


def run_checks(
    spec: GraphSpec,
    *,
    tools: Tools | None = None,
    review: Review | None = None,
    locate: Callable[[SpecIssue], SpecIssue] = lambda issue: issue,
) -> GraphSpec:
    """The checks every loaded or built graph passes: cross-references, then ``review`` on a
    valid spec. Warnings go to :mod:`warnings`; errors raise :class:`GraphSpecError`."""
    issues = validate_graph(spec, tools)
    if not issues and review is not None:
        issues = review(spec)
    located = [locate(issue) for issue in issues]
    for warning in (i for i in located if i.severity == "warning"):
        warnings.warn(GraphWarning(warning), stacklevel=3)
    if errors := [i for i in located if i.severity == "error"]:
        raise GraphSpecError(errors)
    return spec


def dump_graph(spec: GraphSpec) -> str:
    """``spec`` as YAML that :func:`parse_graph` reads back to an equal spec (defaults left out)."""
    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for name, node in data["nodes"].items():
        data["nodes"][name] = {"type": node.pop("type"), **node}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)


def spec_issue(error: Any) -> SpecIssue:
    """One of Pydantic's errors about a spec, in the words of a graph author."""
    loc: PathKey = tuple(error["loc"])
    message = error["msg"]
    suggestion = None
    if error["type"] == "extra_forbidden":
        message = f"unknown key '{loc[-1]}'"
        suggestion = did_you_mean(str(loc[-1]), _KNOWN_KEYS)
    elif error["type"] == "missing":
        message = f"missing required key '{loc[-1]}'"
    elif error["type"] == "union_tag_invalid":
        loc = (*loc, "type")
        message = f"unknown node type {error['input'].get('type')!r}" if isinstance(error["input"], dict) else message
        tags = [tag.strip(" '") for tag in str(error.get("ctx", {}).get("expected_tags", "")).split(",")]
        typed = str(error["input"].get("type")) if isinstance(error["input"], dict) else ""
        suggestion = did_you_mean(typed, tags) or f"use one of: {', '.join(tags)}"
    else:
        where = ".".join(str(p) for p in loc)
        message = f"{where}: {message}"
    return SpecIssue(message, loc, suggestion=suggestion)


def _locate(issue: SpecIssue, filename: str, lines: dict[PathKey, int]) -> SpecIssue:
    """Attach the line of the most specific part of ``issue.path`` present in the file.

    Pydantic puts union tags into error paths (``nodes.refund.tool.timeout``, where the
    middle ``tool`` is the node type), so we take the longest sub-path the file has,
    preferring later parts on a tie.
    """
    parts = issue.path
    candidates = (
        picked
        for size in range(len(parts), 0, -1)
        for picked in sorted(combinations(range(len(parts)), size), reverse=True)
        if tuple(parts[i] for i in picked) in lines
    )
    best = next(candidates, None)
    line = lines[tuple(parts[i] for i in best)] if best else lines.get((), 1)
    return replace(issue, file=filename, line=line)


def _compose(text: str) -> tuple[Any, dict[PathKey, int], list[SpecIssue]]:
    """The data, the line of each path, and the keys given twice."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        lines: dict[PathKey, int] = {}
        duplicates: list[SpecIssue] = []
        data = _build(loader, root, (), lines, duplicates) if root is not None else None
    finally:
        loader.dispose()
    return data, lines, duplicates


def _build(
    loader: yaml.SafeLoader, node: yaml.Node, path: PathKey, lines: dict[PathKey, int], duplicates: list[SpecIssue]
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in result:
                where = ".".join(map(str, (*path, key)))
                duplicates.append(
                    SpecIssue(
                        f"duplicate key '{where}' (first at line {lines[(*path, key)]}); YAML would keep only the last",
                        (*path, key),
                        line=line,
                        suggestion="remove one of them, or merge them into one",
                    )
                )
                continue
            result[key] = _build(loader, value_node, (*path, key), lines, duplicates)
            lines[(*path, key)] = line
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), lines, duplicates) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _spec_keys() -> frozenset[str]:
    keys: set[str] = set()
    for model in vars(spec_module).values():
        if isinstance(model, type) and issubclass(model, BaseModel):
            for name, field in model.model_fields.items():
                keys.add(field.alias or name)
    return frozenset(keys)


_KNOWN_KEYS = _spec_keys()
