"""The HTTP server: webhook ingress and the approvals API, over one Temporal connection."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from pydantic_settings import BaseSettings, SettingsConfigDict

from server.approvals import approvals_router
from server.auth import UserDirectory
from server.ingress import Ingress
from server.sources import SourceCatalog
from server.temporal import TemporalConnection


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
