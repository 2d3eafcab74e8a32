"""One way to open the stores the embedded systems keep: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlmodel import create_engine


def open_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite files get WAL and a busy timeout, so concurrent writers
    queue instead of failing; PostgreSQL gets a pool sized for a worker's activities."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
