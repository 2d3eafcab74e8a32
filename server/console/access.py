"""Who may do what in the console: passwords (argon2id, via argon2-cffi), the four console
roles and what each may do, and the embedded stack's demo admin.

A console role is configuration, beside the user's business roles in the same YAML user
directory (``console_role: viewer | operator | approver | admin``, default ``viewer``).
The console role opens a door (see the inbox, press "approve", cancel a run); the business
roles still decide whether that particular approval is theirs — the workflow's ``decide``
validator checks them, so the console can never widen who may approve.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from chamberlain.server._auth import ConsoleRole, User, UserDirectory

Permission = Literal["view", "decide", "operate"]
PERMISSIONS: dict[ConsoleRole, frozenset[Permission]] = {
    "viewer": frozenset({"view"}),
    "approver": frozenset({"view", "decide"}),
    "operator": frozenset({"view", "operate"}),
    "admin": frozenset({"view", "decide", "operate"}),
}
DEMO_USERS_FILE = "console-users.yaml"

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("no such user")  # unknown users cost as much time as known ones


def hash_password(password: str) -> str:
    """The argon2id hash to store as a user's ``password_argon2``."""
    return _hasher.hash(password)


def may(user: User, permission: Permission) -> bool:
    return permission in PERMISSIONS[user.console_role]


def sign_in(directory: UserDirectory, user_id: str, password: str) -> User | None:
    """The user whose password this is, or ``None`` — the same answer, and about the same time,
    for an unknown user, a user without a password and a wrong password."""
    user = directory.find(user_id)
    stored = user.password_argon2 if user and user.password_argon2 else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    return user if stored is not _DUMMY_HASH else None


@dataclass(frozen=True)
class DemoAdmin:
    user_id: str
    password: str
    users_file: Path


def ensure_demo_admin(data: Path) -> tuple[Path, DemoAdmin | None]:
    """The user directory of the embedded stack, in the data folder. The first time, it is
    created with one demo admin whose fresh random password is returned (to print once: only
    its hash is stored); afterwards the file is returned as it is, with ``None``."""
    path = data / DEMO_USERS_FILE
    if path.exists():
        return path, None
    password = secrets.token_urlsafe(12)
    admin = {
        "id": "admin",
        "roles": ["admin", "manager"],  # manager: the demo graphs' approvals are the admin's to decide
        "clearance": ["pii", "financial", "confidential"],
        "console_role": "admin",
        "password_argon2": hash_password(password),
    }
    data.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# The console's users (created by `chamberlain dev`); add your own with hash_password().\n")
        yaml.safe_dump({"users": [admin]}, out, allow_unicode=True, sort_keys=False)
    return path, DemoAdmin("admin", password, path)
