"""Real HTTP servers on loopback for tests: any ASGI app, served from a thread of its own
(so blocking clients can reach it too)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from chamberlain.server._http import BackgroundServer

ThreadedServer = BackgroundServer


@contextmanager
def serving(app: Any) -> Iterator[str]:
    server = BackgroundServer(app).start()
    try:
        yield server.url
    finally:
        server.stop()
