"""Who is calling the HTTP API: bearer tokens mapped to principals.

The directory (YAML) stores SHA-256 digests of tokens, never the tokens; a request's token
is hashed and compared in constant time against every entry. People who sign in to the
console have an argon2 password hash instead of (or beside) a token, and a console role
(see ``chamberlain.server.console.access``); machines keep using tokens.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Annotated, Literal

import yaml
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from chamberlain.workflows._types import Principal

ConsoleRole = Literal["viewer", "operator", "approver", "admin"]


class User(Principal):
    token_sha256: str | None = None
    password_argon2: str | None = None
    console_role: ConsoleRole = "viewer"

    def principal(self) -> Principal:
        return Principal.model_validate(self.model_dump(include=set(Principal.model_fields)))


class UserDirectory(BaseModel):
    users: list[User] = []

    @classmethod
    def load(cls, path: str | Path) -> UserDirectory:
        return cls.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))

    def authenticate(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).hexdigest().encode()
        found = None
        for user in self.users:  # no early exit: the time taken does not depend on who matched
            if user.token_sha256 and hmac.compare_digest(digest, user.token_sha256.encode()):
                found = user
        return found.principal() if found else None

    def find(self, user_id: str) -> User | None:
        return next((user for user in self.users if user.id == user_id), None)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_bearer = HTTPBearer(auto_error=False)


def current_user(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:  # noqa: B008
    directory: UserDirectory = request.app.state.users
    principal = directory.authenticate(credentials.credentials) if credentials else None
    if principal is None:
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]
OPERATOR_ROLES = frozenset({"operator", "admin"})


def require_operator(request: Request, user: Principal, what: str) -> None:
    """Refuse (403) a caller who holds the operator or admin role neither as a business role nor
    as a console role: counts of what the system does are reconnaissance for an attacker."""
    directory: UserDirectory = request.app.state.users
    known = directory.find(user.id)
    if not (set(user.roles) & OPERATOR_ROLES or (known is not None and known.console_role in OPERATOR_ROLES)):
        raise HTTPException(403, f"{what} need the operator or admin role; {user.id} has neither")
