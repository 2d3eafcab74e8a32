"""The HTTP server: webhook ingress, the runs and approvals APIs, over one Temporal connection."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI

from chamberlain.server._approvals import approvals_router
from chamberlain.server._auth import UserDirectory
from chamberlain.server._codec import codec_router
from chamberlain.server._ingress import Ingress
from chamberlain.server._metrics import mount_metrics
from chamberlain.server._runs import runs_router
from chamberlain.server._settings import ServerSettings
from chamberlain.server._sources import SourceCatalog
from chamberlain.server._telemetry import trace_webhooks
from chamberlain.server._temporal import TemporalConnection
from chamberlain.server.console import mount_console
from chamberlain.workflows._codec import EncryptionCodec
from chamberlain.workflows._devserver import free_port
from chamberlain.workflows._run_index import IndexFeed, RunIndex

__all__ = ["BackgroundServer", "ServerSettings", "create_app"]


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    app = FastAPI(title="Chamberlain", version="0.1", description="Webhook ingress, runs and approvals.")
    temporal = TemporalConnection(settings.temporal_address, settings.namespace)
    settings.ensure_data()  # the run index and the console's secret live there
    app.state.users = UserDirectory.load(settings.users) if settings.users else UserDirectory()
    if settings.webhooks:
        app.state.ingress = Ingress(SourceCatalog.load(settings.webhooks), temporal, settings.public_url)
        app.include_router(app.state.ingress.router())
    app.include_router(approvals_router(temporal))
    app.state.run_index = IndexFeed(RunIndex(settings.run_index_url), temporal.client)
    app.include_router(runs_router(temporal, app.state.run_index))
    mount_metrics(app, app.state.run_index, settings.audit_url)  # GET /metrics for Prometheus
    trace_webhooks(app)  # when tracing is configured (OTEL_EXPORTER_OTLP_ENDPOINT)
    mount_console(app, temporal, settings)  # /console: the ops console, for people signed in with a password
    if codec := EncryptionCodec.from_env():  # the Temporal UI shows decrypted payloads to operators
        app.include_router(codec_router(codec))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


class BackgroundServer:
    """Serve an ASGI app from a thread (uvicorn leaves signal handling to the main thread),
    for `chamberlain dev` and for tests that need a real server on loopback."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port or free_port()
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name=f"http-{self.port}")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the HTTP server could not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
