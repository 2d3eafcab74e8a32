"""Both sides of the business systems' REST contract.

The client translates HTTP at the edge — 4xx becomes :class:`ToolRejected` with the
server's own message (non-retryable), 5xx, timeouts and connection failures become
:class:`ToolUnavailable` (retried by Temporal) — so adapters never see httpx. The server
side maps the same two errors back to status codes.
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from chamberlain.tools._exceptions import ToolRejected, ToolUnavailable

Model = TypeVar("Model", bound=BaseModel)


class JsonClient:
    """JSON over HTTP to one service; ``transport`` lets tests inject ``httpx.MockTransport``."""

    def __init__(
        self, base_url: str, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.transport = transport

    async def request(
        self,
        method: str,
        path: str,
        model: type[Model],
        *,
        body: BaseModel | None = None,
        idempotency_key: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Model:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        payload = body.model_dump(mode="json") if body is not None else None
        try:
            async with httpx.AsyncClient(
                base_url=self.base_url, timeout=self.timeout, transport=self.transport
            ) as client:
                response = await client.request(method, path, json=payload, headers=headers, params=params)
        except httpx.TimeoutException as exc:
            raise ToolUnavailable(f"{method} {self.base_url}{path} timed out") from exc
        except httpx.TransportError as exc:
            raise ToolUnavailable(f"{method} {self.base_url}{path} failed: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise ToolUnavailable(f"{method} {path}: {response.status_code} {_detail(response)}")
        if response.status_code >= 400:
            raise ToolRejected(f"{method} {path}: {response.status_code} {_detail(response)}")
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise ToolUnavailable(f"{method} {path}: the service answered with a malformed body") from exc


def segment(value: str) -> str:
    """An ID as one segment of a URL path: "A1003/../A1004" or "A1004?of=A1003" names no other
    order than the one the call names, on any server."""
    if value in ("", ".", ".."):
        raise ToolRejected(f"no such ID: {value!r}")
    return quote(value, safe="")


def _detail(response: httpx.Response) -> str:
    try:
        detail: Any = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return str(detail)[:300]


def serve_errors(app: FastAPI) -> FastAPI:
    """Answer a rejection with 404 (a thing that does not exist) or 409 (a rule that says no)."""

    @app.exception_handler(ToolRejected)
    async def rejected(_request: Request, exc: ToolRejected) -> JSONResponse:
        message = str(exc)
        return JSONResponse({"detail": message}, status_code=404 if message.startswith("no ") else 409)

    return app
