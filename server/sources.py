"""Declarative webhook sources (YAML): who may call, how they sign, what their events start.

Secrets are references — ``env:NAME`` or ``file:/path`` — resolved when the source loads,
so the YAML file holds no secret and no secret reaches a log.
"""

from __future__ import annotations

import importlib
import os
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from chamberlain.agents.expressions import Expression, compile_expression
from chamberlain.agents.loader import load_graph
from chamberlain.agents.spec import Duration, GraphSpec
from chamberlain.server.signatures import Encoding, Scheme
from chamberlain.workflows.types import Principal


class SignatureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scheme: Scheme = "hmac-sha256"
    header: str = "X-Signature-256"
    encoding: Encoding = "hex"
    prefix: str = ""
    tolerance: Duration = timedelta(minutes=5)


class EventIdSpec(BaseModel):
    """Where the event's own ID is: a header, or a dotted path into the JSON body."""

    model_config = ConfigDict(extra="forbid")
    header: str | None = None
    json_path: str | None = Field(None, alias="json")

    def find(self, headers: Any, payload: dict[str, Any]) -> str | None:
        if self.header:
            return headers.get(self.header)
        value: Any = payload
        for part in (self.json_path or "").split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return None if value is None else str(value)


class WebhookSource(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    secrets: list[str] = Field(
        min_length=1,
        description="env:NAME or file:/path, more than one during rotation; a trailing ? marks it optional",
    )
    signature: SignatureSpec = SignatureSpec()
    event_id: EventIdSpec = EventIdSpec(header="X-Event-Id")
    payload: str = Field(description="import path of the payload's Pydantic model, module:Class")
    graph: Path
    input: dict[str, str] = Field({}, description="state field → expression over `payload`")
    principal: dict[str, str] = Field({"id": "'webhook'"}, description="Principal field → expression over `payload`")
    max_body: int = Field(256 * 1024, ge=1)
    task_queue: str = "chamberlain"

    @field_validator("input", "principal")
    @classmethod
    def _expressions_compile(cls, mapping: dict[str, str]) -> dict[str, str]:
        for source in mapping.values():
            compile_expression(source)
        return mapping

    def secret_values(self) -> list[bytes]:
        values = [v.encode() for reference in self.secrets if (v := _resolve(reference, self.name)) is not None]
        if not values:
            raise ValueError(f"webhook source {self.name}: none of its secrets is set")
        return values

    @cached_property
    def payload_model(self) -> type[BaseModel]:
        module, _, name = self.payload.partition(":")
        model = getattr(importlib.import_module(module), name)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"source {self.name}: {self.payload} is not a Pydantic model")
        return model

    @cached_property
    def spec(self) -> GraphSpec:
        return load_graph(self.graph)

    @cached_property
    def _mappings(self) -> tuple[dict[str, Expression], dict[str, Expression]]:
        compiled = {k: compile_expression(v) for k, v in self.input.items()}
        return compiled, {k: compile_expression(v) for k, v in self.principal.items()}

    def run_input(self, payload: BaseModel) -> tuple[dict[str, Any], Principal]:
        scope = {"payload": payload.model_dump(mode="json")}
        values, principal = self._mappings
        return {k: e(scope) for k, e in values.items()}, Principal(
            kind="service", **{k: e(scope) for k, e in principal.items()}
        )


class SourceCatalog(BaseModel):
    sources: list[WebhookSource]

    @classmethod
    def load(cls, path: str | Path) -> SourceCatalog:
        base = Path(path).parent
        catalog = cls.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
        for source in catalog.sources:
            source.graph = source.graph if source.graph.is_absolute() else base / source.graph
            source.secret_values()  # fail at start-up, not on the first request
        return catalog

    def get(self, name: str) -> WebhookSource | None:
        return next((s for s in self.sources if s.name == name), None)


def _resolve(reference: str, source: str) -> str | None:
    optional = reference.endswith("?")
    kind, _, where = reference.rstrip("?").partition(":")
    if kind == "env" and (value := os.environ.get(where)):
        return value
    if kind == "file" and Path(where).is_file():
        return Path(where).read_text(encoding="utf-8").strip()
    if optional:
        return None
    raise ValueError(f"webhook source {source}: secret {kind}:{where} is not set (use env:NAME or file:/path)")
