"""An OpenAI-compatible server of our own that misbehaves on request, on loopback.

Tests queue behaviours (``ok``, ``429``, ``500``, ``400``, ``hang``, ``truncated``,
``nonjson``, ``invalid_tool_call``); each request takes the next one (``ok`` when none is
queued). Every request body is kept, so a test can assert what a model server received.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from chamberlain.workflows._devserver import free_port
from tests.support.servers import ThreadedServer


@dataclass
class Behaviour:
    mode: str = "ok"
    content: str | None = None
    retry_after: float | None = None


@dataclass
class FakeModelServer:
    default_content: str = "ok"
    port: int = field(default_factory=free_port)
    queue: deque[Behaviour] = field(default_factory=deque)
    received: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    _server: ThreadedServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def then(self, *behaviours: Behaviour | str) -> FakeModelServer:
        self.queue.extend(b if isinstance(b, Behaviour) else Behaviour(b) for b in behaviours)
        return self

    def received_text(self) -> str:
        return json.dumps(self.received, ensure_ascii=False)

    async def _completions(self, request: Request) -> Response:
        body = await request.json()
        self.received.append(body)
        self.authorizations.append(request.headers.get("authorization"))
        behaviour = self.queue.popleft() if self.queue else Behaviour()
        content = behaviour.content if behaviour.content is not None else self.default_content
        match behaviour.mode:
            case "429" | "500" | "503" | "400" | "401" | "404" | "422":
                headers = {"Retry-After": str(behaviour.retry_after)} if behaviour.retry_after is not None else None
                return JSONResponse(
                    {"error": {"message": f"fake {behaviour.mode}"}}, int(behaviour.mode), headers=headers
                )
            case "hang":
                await asyncio.sleep(3600)
            case "nonjson":
                return Response("<html>gateway error</html>", 200, media_type="text/html")
            case "truncated":
                return _Truncated(json.dumps(_completion(body, content)))
            case "invalid_tool_call":
                call = {"id": "call-1", "type": "function", "function": {"name": "erp.refund", "arguments": "{oops"}}
                return JSONResponse(_completion(body, "", tool_calls=[call]))
        if body.get("stream"):
            return StreamingResponse(_sse(body, content), media_type="text/event-stream")
        return JSONResponse(_completion(body, content))

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])])

    def start(self) -> FakeModelServer:
        self._server = ThreadedServer(self.app(), port=self.port).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()


def _completion(
    request: dict[str, Any], content: str, tool_calls: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    prompt = sum(len(str(m.get("content", ""))) for m in request.get("messages", [])) // 4 + 1
    return {
        "id": "fake-1",
        "object": "chat.completion",
        "model": request.get("model", "fake"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": len(content) // 4 + 1, "total_tokens": prompt + 1},
    }


async def _sse(request: dict[str, Any], content: str) -> AsyncIterator[str]:
    for word in content.split(" "):
        yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': word + ' '}}]})}\n\n"
    usage = _completion(request, content)["usage"]
    yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


class _Truncated(Response):
    """Promises more bytes than it sends, then closes: the client sees a cut-off body."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.body[: len(self.body) // 2]
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
