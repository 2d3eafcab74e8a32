"""An OpenAI-compatible server of our own that misbehaves on request, on loopback.

Tests queue behaviours (``ok``, ``429``, ``500``, ``400``, ``hang``, ``truncated``,
``nonjson``, ``invalid_tool_call``, ``stall_mid_body``); each request takes the next one
(``ok`` when none is queued). Every request body is kept, so a test can assert what a model
server received.

:class:`ModelServerProcess` runs one in a process of its own
(``python -m tests.support.fake_model_server PORT CONTENT [BEHAVIOUR...]``), so a test can
SIGKILL it while it is sending an answer (``stall_mid_body``: the status line, the headers and
half the body, then nothing) and start it again on the same port.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
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
    announce: Callable[[str], None] = lambda _event: None  # told "received" and "mid-body"
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
        self.announce("received")
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
            case "stall_mid_body":
                return _StalledMidBody(json.dumps(_completion(body, content)), announce=self.announce)
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


class _StalledMidBody(Response):
    """Sends the status, the headers (chunked: no length promised, as servers that stream do)
    and half the body, says so, then sends nothing more: a process killed now cuts the answer."""

    def __init__(self, content: str, announce: Callable[[str], None]) -> None:
        super().__init__(content, media_type="application/json")
        self.announce = announce

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})
        self.announce("mid-body")
        await asyncio.sleep(3600)


class _Truncated(Response):
    """Promises more bytes than it sends, then closes: the client sees a cut-off body."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.body[: len(self.body) // 2]
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


@dataclass
class ModelServerProcess:
    """A :class:`FakeModelServer` in a process of its own, on a port that survives restarts:
    ``start`` it with the behaviours its requests take, wait for an event it reports
    (``received``, ``mid-body``), ``kill`` it (SIGKILL) and ``start`` it again."""

    default_content: str = "ok"
    port: int = field(default_factory=free_port)
    received: list[int] = field(default_factory=list)  # requests received, per life
    _process: subprocess.Popen[str] | None = None
    _events: queue.Queue[str] = field(default_factory=queue.Queue)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, *behaviours: str) -> ModelServerProcess:
        root = Path(__file__).parents[2]
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.fake_model_server",
                str(self.port),
                self.default_content,
                *behaviours,
            ],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        self._process, self._events = process, queue.Queue()
        self.received.append(0)
        life = len(self.received) - 1
        threading.Thread(target=self._read, args=(process, life, self._events), daemon=True).start()
        return self

    def _read(self, process: subprocess.Popen[str], life: int, events: queue.Queue[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            event = line.strip()
            if event == "received":
                self.received[life] += 1
            events.put(event)

    def wait_for(self, event: str, timeout: float = 60) -> None:
        """Block until the running process reports ``event``."""
        while True:
            try:
                if self._events.get(timeout=timeout) == event:
                    return
            except queue.Empty:
                raise AssertionError(f"the model server never reported {event!r}") from None

    def kill(self) -> None:
        if self._process:
            self._process.kill()
            self._process.wait()
            self._process = None


def _serve(port: int, content: str, behaviours: list[str]) -> None:
    server = FakeModelServer(default_content=content, port=port, announce=lambda event: print(event, flush=True))
    server.then(*behaviours).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2], sys.argv[3:])
