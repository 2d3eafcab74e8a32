"""The server's connection to Temporal: made on first use and re-made after a failure, so
the HTTP server starts (and answers 503) while Temporal is away. The command line reaches
Temporal through :func:`reach` too, so both say the same thing when it is not there."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from chamberlain.server._settings import ServerSettings
from chamberlain.workflows._codec import EncryptionCodec
from chamberlain.workflows._converter import connect
from chamberlain.workflows._devserver import DevServer
from chamberlain.workflows._telemetry import tracing_interceptors


class TemporalUnavailable(Exception):
    """Temporal cannot be reached now; the caller should answer 503 with Retry-After."""


async def reach(address: str, namespace: str = "default", timeout: float = 5.0) -> Client:
    """A client for ``address``, or :class:`TemporalUnavailable` naming the address and a fix."""
    try:
        return await asyncio.wait_for(connect(address, namespace, codec=payload_codec()), timeout=timeout)
    except (RuntimeError, OSError, TimeoutError) as exc:
        raise TemporalUnavailable(
            f"Temporal at {address} (namespace {namespace}) is unreachable — start it with `chamberlain dev`, "
            "or point --address / TEMPORAL_ADDRESS at your Temporal service"
        ) from exc


def payload_codec() -> EncryptionCodec | None:
    """The deployment's payload keys (``CHAMBERLAIN_PAYLOAD_KEYS``); unset, those ``chamberlain dev``
    keeps in the data folder, if it has started there — else a run started from this shell would
    reach its worker unencrypted, be refused, and never run."""
    if codec := EncryptionCodec.from_env():
        return codec
    dev = DevServer(ServerSettings().temporal_db)
    return EncryptionCodec.parse(dev.payload_keys()) if dev.keys_file.exists() else None


class TemporalConnection:
    def __init__(self, address: str, namespace: str = "default") -> None:
        self.address, self.namespace = address, namespace
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        async with self._lock:
            if self._client is None:
                client = await reach(self.address, self.namespace)
                if tracing := tracing_interceptors():  # a webhook's trace continues into the run it starts
                    config = client.config()
                    config["interceptors"] = [*config["interceptors"], *tracing]
                    client = Client(**config)
                self._client = client
            return self._client
