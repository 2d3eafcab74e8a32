"""Who is calling the HTTP API: bearer tokens mapped to principals.

The directory (YAML) stores SHA-256 digests of tokens, never the tokens; a request's token
is hashed and compared in constant time against every entry.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Annotated

import yaml
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from chamberlain.workflows.types import Principal


class User(Principal):
    token_sha256: str


class UserDirectory(BaseModel):
    users: list[User] = []

    @classmethod
    def load(cls, path: str | Path) -> UserDirectory:
        return cls.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))

    def authenticate(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).hexdigest().encode()
        found = None
        for user in self.users:  # no early exit: the time taken does not depend on who matched
            if hmac.compare_digest(digest, user.token_sha256.encode()):
                found = user
        return Principal.model_validate(found.model_dump(exclude={"token_sha256"})) if found else None


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
