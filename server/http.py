"""The HTTP server: webhook ingress and the approvals API, over one Temporal connection."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic_settings import BaseSettings, SettingsConfigDict

from chamberlain.server.approvals import approvals_router
from chamberlain.server.auth import UserDirectory
from chamberlain.server.ingress import Ingress
from chamberlain.server.sources import SourceCatalog
from chamberlain.server.temporal import TemporalConnection
from chamberlain.workflows.devserver import free_port


class ServerSettings(BaseSettings):
    """Read from ``CHAMBERLAIN_*`` environment variables (or passed in)."""

    model_config = SettingsConfigDict(env_prefix="CHAMBERLAIN_")

    temporal_address: str = "127.0.0.1:7233"
    namespace: str = "default"
    webhooks: Path | None = None
    users: Path | None = None
    public_url: str = "http://127.0.0.1:8000"


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    app = FastAPI(title="Chamberlain", version="0.1", description="Webhook ingress and approvals.")
    temporal = TemporalConnection(settings.temporal_address, settings.namespace)
    app.state.users = UserDirectory.load(settings.users) if settings.users else UserDirectory()
    if settings.webhooks:
        app.state.ingress = Ingress(SourceCatalog.load(settings.webhooks), temporal, settings.public_url)
        app.include_router(app.state.ingress.router())
    app.include_router(approvals_router(temporal))

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
