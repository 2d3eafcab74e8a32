"""The deployment's settings, read once from ``CHAMBERLAIN_*`` variables: where Temporal is,
the HTTP server's sources and users, and the data folder with every path derived from it.

One object, so ``chamberlain dev``, ``worker``, ``audit verify`` and the HTTP server never
disagree about where the audit log or the Temporal database lives.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    """Read from ``CHAMBERLAIN_*`` environment variables (or passed in). ``data`` holds what the
    embedded stack keeps (``CHAMBERLAIN_DATA``, default ``.chamberlain`` in the working directory);
    ``audit`` overrides the audit log's database URL (``CHAMBERLAIN_AUDIT``)."""

    model_config = SettingsConfigDict(env_prefix="CHAMBERLAIN_")

    temporal_address: str = "127.0.0.1:7233"
    namespace: str = "default"
    webhooks: Path | None = None
    users: Path | None = None
    public_url: str = "http://127.0.0.1:8000"
    data: Path = Path(".chamberlain")
    audit: str | None = None
    console_secret: str | None = None  # signs console sessions; unset: a random one kept in the data folder
    temporal_ui: str | None = None  # the Temporal UI's URL, linked from the console's run pages
    runs: str | None = None  # the run index's database URL (CHAMBERLAIN_RUNS); default: in the data folder
    usage: str | None = None  # the model usage ledger's database URL (CHAMBERLAIN_USAGE); default: data folder
    budgets: dict[str, float] = {}  # department -> cost per calendar month (CHAMBERLAIN_BUDGETS, JSON)

    @property
    def audit_url(self) -> str:
        return self.audit or f"sqlite:///{self.data / 'audit.sqlite'}"

    @property
    def run_index_url(self) -> str:
        return self.runs or f"sqlite:///{self.data / 'runs.sqlite'}"

    @property
    def usage_url(self) -> str:
        return self.usage or f"sqlite:///{self.data / 'usage.sqlite'}"

    @property
    def temporal_db(self) -> Path:
        return self.data / "temporal.db"

    def log(self, name: str) -> Path:
        """The log file of one embedded process (``temporal``, ``model``), in the data folder."""
        return self.data / f"{name}.log"

    def ensure_data(self) -> Path:
        """Create the data folder (a fresh clone has none) and return it."""
        self.data.mkdir(parents=True, exist_ok=True)
        return self.data
