"""The console on a real HTTP server for tests: a user directory with argon2 passwords and
console roles, the server's audit log beside the test's ledger (where test workers write)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from chamberlain.server._http import ServerSettings, create_app
from chamberlain.server.console import hash_password
from tests.support.servers import ThreadedServer

PASSWORD = "correct horse 電池 staple"  # non-Latin on purpose
USERS = [
    {"id": "root", "roles": ["admin"], "console_role": "admin", "clearance": ["pii", "financial"]},
    {"id": "maria", "roles": ["manager"], "console_role": "approver", "clearance": ["pii", "financial"]},
    {"id": "olga", "roles": ["ops"], "console_role": "operator"},
    {"id": "victor", "roles": ["viewer"], "console_role": "viewer"},
]
_HASH = hash_password(PASSWORD)


def write_users(path: Path) -> Path:
    users = [{**user, "password_argon2": _HASH} for user in USERS]
    path.write_text(yaml.safe_dump({"users": users}, allow_unicode=True), encoding="utf-8")
    return path


@contextmanager
def console_server(temporal_address: str, folder: Path, ledger: Path, **settings: object) -> Iterator[str]:
    config = ServerSettings(
        temporal_address=temporal_address,
        users=write_users(folder / "users.yaml"),
        data=folder / "data",
        audit=f"sqlite:///{ledger.with_suffix('.audit.sqlite')}",
        **settings,  # type: ignore[arg-type]
    )
    server = ThreadedServer(create_app(config)).start()
    try:
        yield server.url
    finally:
        server.stop()
