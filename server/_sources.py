"""Declarative webhook sources (YAML): who may call, how they sign, what their events start.

Secrets are references — ``env:NAME`` or ``file:/path`` — resolved when the source loads,
so the YAML file holds no secret and no secret reaches a log.

The event ID decides which run an event joins, so it must be as authentic as the body: a
source takes it from the signed body (``event_id: {json: id}``) or from a header its
signature covers (``webhook-id`` under ``standard-webhooks``). A header that no signature
covers is refused at load time — anyone holding one captured body could otherwise start a
new run with every fresh header.

Everything that can be checked before the first request is checked by
:meth:`SourceCatalog.load` — secrets set, payload model importable, graph valid, the
customer field present in the payload model — and reported as ``file:line: what — fix``.
"""

from __future__ import annotations

import importlib
import os
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chamberlain.agents._exceptions import ExpressionError, GraphSpecError
from chamberlain.agents._expressions import Expression, compile_expression
from chamberlain.agents._loader import load_graph
from chamberlain.agents._spec import Duration, GraphSpec
from chamberlain.server._signatures import Encoding, Scheme, sign, verify
from chamberlain.workflows._types import Principal

STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_SIGNATURE = "webhook-id", "webhook-timestamp", "webhook-signature"
_DEFAULT_HEADER: dict[str, str] = {
    "hmac-sha256": "X-Signature-256",
    "stripe": "Stripe-Signature",
    "standard-webhooks": STANDARD_SIGNATURE,
}


class SourceError(ValueError):
    """The sources file has mistakes; one line each, ``file:line: what — fix``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class PayloadError(ValueError):
    """A valid payload that cannot become a run (no customer, an input mapping that fails); safe to show."""


class SignatureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scheme: Scheme = "hmac-sha256"
    header: str = Field("", description="the signature's header; the scheme's usual one when left out")
    encoding: Encoding = "hex"
    prefix: str = ""
    tolerance: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _default_header(self) -> SignatureSpec:
        self.header = self.header or _DEFAULT_HEADER[self.scheme]
        return self

    def signed_headers(self) -> frozenset[str]:
        """The headers (lower case) whose values the signature covers, besides its own."""
        return frozenset({STANDARD_ID, STANDARD_TIMESTAMP} if self.scheme == "standard-webhooks" else ())

    def verify(self, secrets: list[bytes], body: bytes, headers: Mapping[str, str], event_id: str | None) -> None:
        """Raise :class:`~chamberlain.server._signatures.SignatureError` unless the request is signed."""
        verify(
            secrets,
            body,
            headers.get(self.header),
            scheme=self.scheme,
            encoding=self.encoding,
            prefix=self.prefix,
            tolerance=self.tolerance.total_seconds(),
            event_id=event_id,
            timestamp=headers.get(STANDARD_TIMESTAMP),
        )


class EventIdSpec(BaseModel):
    """Where the event's own ID is: a dotted path into the signed JSON body, or a signed header."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    header: str | None = None
    json_path: str | None = Field(None, alias="json", min_length=1)

    @model_validator(mode="after")
    def _one_place(self) -> EventIdSpec:
        if (self.header is None) == (self.json_path is None):
            raise ValueError("give exactly one of json: <field of the body> or header: <signed header>")
        return self

    @property
    def where(self) -> str:
        return f"header {self.header}" if self.header else f"body field {self.json_path}"

    def find(self, payload: Any) -> str | int | None:
        """The ID at ``json_path`` in ``payload``: a string or integer, else ``None``."""
        value = dig(payload, self.json_path or "")
        return value if isinstance(value, str | int) and not isinstance(value, bool) else None


class PrincipalSpec(BaseModel):
    """Who the source's runs act for: a service, and the customer named by a payload field."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    kind: Literal["user", "service"] = "service"
    roles: list[str] = []
    department: str | None = None
    tenant: str | None = None
    customer_field: str | None = Field(
        None, min_length=1, description="dotted path of the payload field naming the customer the event acts for"
    )

    def principal(self, payload: Mapping[str, Any]) -> Principal:
        """The run's principal; :class:`PayloadError` if the customer field is missing or empty."""
        customer = None
        if self.customer_field:
            value = dig(payload, self.customer_field)
            customer = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
            if not customer:
                raise PayloadError(
                    f"payload field {self.customer_field} names the customer this event acts for; "
                    "it is missing or empty"
                )
        return Principal(**self.model_dump(exclude={"customer_field"}), customer=customer)


class WebhookSource(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    secrets: list[str] = Field(
        min_length=1,
        description="env:NAME or file:/path, more than one during rotation; a trailing ? marks it optional",
    )
    signature: SignatureSpec = SignatureSpec()
    event_id: EventIdSpec | None = Field(
        None, description="required, except under standard-webhooks (its signed webhook-id header)"
    )
    payload: str = Field(description="import path of the payload's Pydantic model, module:Class")
    graph: Path
    input: dict[str, str] = Field({}, description="state field → expression over `payload`")
    principal: PrincipalSpec = PrincipalSpec(id="webhook")
    max_body: int = Field(256 * 1024, ge=1)
    max_depth: int = Field(32, ge=1, le=500, description="how deeply the body's arrays and objects may nest")
    max_number_length: int = Field(40, ge=1, le=4000, description="characters in one number of the body")
    task_queue: str = "chamberlain"

    @field_validator("input")
    @classmethod
    def _expressions_compile(cls, mapping: dict[str, str]) -> dict[str, str]:
        for source in mapping.values():
            compile_expression(source)
        return mapping

    @model_validator(mode="after")
    def _event_id_is_signed(self) -> WebhookSource:
        if self.event_id is None and self.signature.scheme != "standard-webhooks":
            raise ValueError(
                f"event_id is required under {self.signature.scheme}: take it from the signed body, "
                "event_id: {json: <field>}"
            )
        header = self.event.header
        if header is not None and header.lower() not in self.signature.signed_headers():
            raise ValueError(
                f"event_id header {header} is not covered by the {self.signature.scheme} signature, so a captured "
                "body could be replayed under new IDs — take the ID from the signed body, event_id: {json: <field>}, "
                f"or use scheme standard-webhooks, which signs {STANDARD_ID}"
            )
        return self

    @property
    def event(self) -> EventIdSpec:
        """Where this source's event IDs are (``webhook-id`` under standard-webhooks, unless told)."""
        return self.event_id or EventIdSpec(header=STANDARD_ID)

    def secret_values(self) -> list[bytes]:
        values = [v.encode() for reference in self.secrets if (v := _resolve(reference, self.name)) is not None]
        if not values:
            raise ValueError(f"webhook source {self.name}: none of its secrets is set")
        return values

    @cached_property
    def payload_model(self) -> type[BaseModel]:
        module, _, name = self.payload.partition(":")
        model = getattr(importlib.import_module(module), name, None)
        if model is None:  # not AttributeError: a property raising it would be reported as missing
            raise ImportError(f"module {module} has no {name!r} (name it module:Class)")
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{self.payload} is not a Pydantic model")
        return model

    @cached_property
    def spec(self) -> GraphSpec:
        return load_graph(self.graph)

    @cached_property
    def _input(self) -> dict[str, Expression]:
        return {k: compile_expression(v) for k, v in self.input.items()}

    def run_input(self, payload: BaseModel) -> tuple[dict[str, Any], Principal]:
        """The run's input and principal from a validated payload, or :class:`PayloadError`."""
        scope = {"payload": payload.model_dump(mode="json")}
        principal = self.principal.principal(scope["payload"])
        values = {}
        for key, expression in self._input.items():
            try:
                values[key] = expression(scope)
            except ExpressionError as exc:  # its text may quote the payload's values: personal data
                failed = type(exc.__cause__).__name__ if exc.__cause__ else "an error"
                raise PayloadError(
                    f"payload does not map to the run's input {key}: {expression.source!r} raised {failed}"
                ) from exc
        return values, principal

    def sign_request(self, body: bytes, event_id: str | None = None) -> dict[str, str]:
        """The headers a sender puts on ``body`` (for ``chamberlain webhook sign/send`` and tests)."""
        sig, headers = self.signature, {"Content-Type": "application/json"}
        secret, now = self.secret_values()[0], int(time.time())
        if self.event.json_path is not None:
            if event_id is not None:
                raise ValueError(f"source {self.name} takes its event ID from the body ({self.event.where})")
        else:
            event_id = event_id or f"evt-{uuid.uuid4().hex[:16]}"
            headers |= {STANDARD_ID: event_id, STANDARD_TIMESTAMP: str(now)}
        headers[sig.header] = sign(
            secret, body, scheme=sig.scheme, encoding=sig.encoding, prefix=sig.prefix, timestamp=now, event_id=event_id
        )
        return headers

    def check(self) -> list[tuple[str, str]]:
        """Problems found by resolving everything a request will need: ``(key, message)`` pairs."""
        problems = []
        try:
            secrets = self.secret_values()
            if self.signature.scheme == "standard-webhooks":
                sign(secrets[0], b"", scheme="standard-webhooks", timestamp=0, event_id="check")
        except ValueError as exc:
            problems.append(("secrets", str(exc)))
        try:
            fields = self.payload_model.model_fields
        except (ImportError, TypeError, SyntaxError) as exc:
            problems.append(
                (
                    "payload",
                    f"payload model {self.payload} cannot be loaded: {type(exc).__name__}: {exc} — name it "
                    "module:Class, importable from any directory (chamberlain.examples.<scenario>.<module>:<Class> "
                    "or a module of your installed package)",
                )
            )
        else:
            field = (self.principal.customer_field or "").split(".")[0]
            if field and field not in fields:
                problems.append(("principal", f"customer_field {field!r} is not a field of {self.payload}"))
        try:
            self.spec  # noqa: B018 — loading is the check
        except (GraphSpecError, OSError) as exc:
            problems.append(("graph", f"graph {self.graph}: {exc}"))
        return problems


class SourceCatalog(BaseModel):
    sources: list[WebhookSource]

    @classmethod
    def load(cls, path: str | Path, *, secrets: bool = True) -> SourceCatalog:
        """Read and check the sources file; :class:`SourceError` lists every problem with its line.
        ``secrets=False``: for reading payloads only (``chamberlain eval``), unset secrets are no problem."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        try:
            data, lines = _compose(text)
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else 1
            raise SourceError([f"{path}:{line}: not valid YAML: {exc.problem}"]) from exc

        def at(where: tuple[str | int, ...]) -> str:
            while where not in lines and where:
                where = where[:-1]
            return f"{path}:{lines.get(where, 1)}"

        try:
            catalog = cls.model_validate(data)
        except ValidationError as exc:
            found = [(tuple(e["loc"]), e["msg"]) for e in exc.errors()]
            issues = [f"{at(loc)}: {'.'.join(map(str, loc)) or 'the file'}: {msg}" for loc, msg in found]
            raise SourceError(issues) from exc
        problems: list[str] = []
        for i, source in enumerate(catalog.sources):
            source.graph = source.graph if source.graph.is_absolute() else path.parent / source.graph
            checked = [(key, msg) for key, msg in source.check() if secrets or key != "secrets"]
            problems += [f"{at(('sources', i, key))}: source {source.name}: {msg}" for key, msg in checked]
        if problems:
            raise SourceError(problems)
        return catalog

    def get(self, name: str) -> WebhookSource | None:
        return next((s for s in self.sources if s.name == name), None)


def dig(value: Any, dotted: str) -> Any:
    """``value["a"]["b"]`` for ``"a.b"``, or ``None`` where a part is missing."""
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _compose(text: str) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    """The YAML data and the line of each key and item in it."""
    lines: dict[tuple[str | int, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, (*path, key.value))
                lines[(*path, key.value)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return yaml.safe_load(text), lines


def _resolve(reference: str, source: str) -> str | None:
    optional = reference.endswith("?")
    kind, _, where = reference.rstrip("?").partition(":")
    if kind == "env" and (value := os.environ.get(where)):
        return value
    if kind == "file" and Path(where).is_file() and (value := Path(where).read_text(encoding="utf-8").strip()):
        return value  # an empty file is no secret: anyone could sign with the empty key
    if optional:
        return None
    raise ValueError(f"webhook source {source}: secret {kind}:{where} is not set (use env:NAME or file:/path)")
