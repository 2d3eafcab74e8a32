"""The server's connection to Temporal: made on first use and re-made after a failure, so
the HTTP server starts (and answers 503) while Temporal is away."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from chamberlain.workflows.converter import connect


class TemporalUnavailable(Exception):
    """Temporal cannot be reached now; the caller should answer 503 with Retry-After."""


class TemporalConnection:
    def __init__(self, address: str, namespace: str = "default") -> None:
        self.address, self.namespace = address, namespace
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(connect(self.address, self.namespace), timeout=5)
                except (RuntimeError, OSError, TimeoutError) as exc:
                    raise TemporalUnavailable(f"Temporal at {self.address} is unreachable") from exc
            return self._client
