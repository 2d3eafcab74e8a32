"""How labels follow data through one step (the rules; :mod:`agents.labels` holds the data).

A field a step writes takes its declared labels plus those of what it was made from; a
choice from a fixed set carries none of them. The strings a labelled field holds are
remembered as labelled values, so masking finds them wherever they are quoted later.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage

from chamberlain.agents._labels import DataLabels, strings_in
from chamberlain.agents._spec import FieldType, OutputField

Labelled = tuple[dict[str, list[str]], dict[str, list[str]]]
"""A step's fields' labels, and the labelled values in them (by label)."""


def declassified(output: dict[str, OutputField] | None, field: str) -> bool:
    """A choice from a fixed set (an enum, a yes/no) carries none of the labels of what it judged."""
    spec = (output or {}).get(field)
    return spec is not None and (spec.enum is not None or spec.type is FieldType.BOOL)


def labelled_values(data: dict[str, Any], labels: dict[str, list[str]]) -> dict[str, list[str]]:
    """The strings in each labelled field of ``data``, by label."""
    values: dict[str, list[str]] = {}
    for f, ls in labels.items():
        if f in data:
            for label in ls:
                values.setdefault(label, []).extend(strings_in(data[f]))
    return values


def in_messages(
    labels: DataLabels, messages: list[BaseMessage], read: list[str]
) -> tuple[list[str], dict[str, list[str]]]:
    """The labels of what the messages carry — of the fields they were made from (``read``),
    and of any labelled value that shows up in them — and those labelled values."""
    found = labels.found_in("\n".join(m.text for m in messages))
    return sorted({*read, *found}), found
