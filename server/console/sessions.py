"""Console sessions and CSRF protection, in one signed cookie.

Every console visitor holds a ``chamberlain_session`` cookie signed with itsdangerous
(``HttpOnly``, ``SameSite=Strict``, and ``Secure`` whenever the console is served over https:
the public URL starts with ``https://`` or the request arrived over https — behind a proxy,
run uvicorn with ``--proxy-headers`` so it sees the original scheme). It carries a random
nonce and, once signed in, the user's ID and when they signed in. Every form posts a CSRF
token, the HMAC of that nonce under the server's secret; a post without it, or with another
session's, is refused. Signing in issues a fresh nonce, so a planted cookie is useless.
The user is looked up in the directory on every request: removing a user ends their sessions.

The nonce is also the session's ID: signing out records it (hashed) as revoked in
``console-sessions.sqlite`` in the data folder, which every request checks — a copied cookie
is dead after sign-out, on every server sharing that folder. Entries are pruned once the
cookie would have expired anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from chamberlain.server._auth import User, UserDirectory
from chamberlain.server._settings import ServerSettings
from chamberlain.server.console.errors import ConsoleError

COOKIE = "chamberlain_session"
MAX_AGE = 8 * 3600  # seconds a session lasts after sign-in
SECRET_FILE = "console.secret"
REVOKED_FILE = "console-sessions.sqlite"


def session_secret(settings: ServerSettings) -> str:
    """``CHAMBERLAIN_CONSOLE_SECRET``, else a random secret kept (mode 600) in the data folder,
    created on first use — so sessions survive a restart but no default secret ever exists."""
    if settings.console_secret:
        if len(settings.console_secret) < 32:
            raise ValueError("CHAMBERLAIN_CONSOLE_SECRET is shorter than 32 characters — use `openssl rand -hex 32`")
        return settings.console_secret
    path: Path = settings.ensure_data() / SECRET_FILE
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_text(encoding="utf-8").strip()
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secrets.token_hex(32))
    return path.read_text(encoding="utf-8").strip()


class RevokedSessions:
    """Sessions signed out before their cookie expired (SHA-256 of the session ID, and when the
    cookie expires), in SQLite: shared by the server processes of one data folder."""

    def __init__(self, path: Path) -> None:
        self._path = path
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS revoked (session TEXT PRIMARY KEY, expires REAL NOT NULL)")

    def revoke(self, session_id: str) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO revoked VALUES (?, ?)", (_digest(session_id), now + MAX_AGE))
            db.execute("DELETE FROM revoked WHERE expires < ?", (now,))

    def __contains__(self, session_id: object) -> bool:
        if not isinstance(session_id, str):
            return False
        with self._connect() as db:
            found = db.execute("SELECT 1 FROM revoked WHERE session = ?", (_digest(session_id),)).fetchone()
        return found is not None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=10, isolation_level=None)  # autocommit: one statement, one write


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Visitor:
    """Who holds this session: ``user`` once signed in; ``csrf`` is the token their forms carry."""

    user: User | None
    csrf: str


class Sessions:
    def __init__(self, secret: str, directory: UserDirectory, public_url: str, revoked: RevokedSessions) -> None:
        self._revoked = revoked
        self._serializer = URLSafeTimedSerializer(secret, salt="chamberlain.console.session")
        self._key = hashlib.sha256(b"chamberlain.console.csrf:" + secret.encode()).digest()
        self._directory = directory
        self._https = public_url.startswith("https://")

    def visitor(self, request: Request) -> Visitor | None:
        """The session's holder, or ``None`` without a valid, unexpired session cookie."""
        data = self._load(request)
        if data is None:
            return None
        user = self._directory.find(data["user"]) if data.get("user") else None
        return Visitor(user=user, csrf=self._csrf(data["nonce"]))

    def start(self, request: Request, response: Response, user: User | None = None) -> Visitor:
        """A fresh session (new nonce) for ``user`` (``None``: anonymous, for the sign-in form)."""
        cookie, visitor = self.open(user)
        self.attach(request, response, cookie)
        return visitor

    def open(self, user: User | None) -> tuple[str, Visitor]:
        """A new session's cookie value and visitor, for a page that needs the token before the response exists."""
        nonce = secrets.token_urlsafe(24)
        cookie = self._serializer.dumps({"nonce": nonce, "user": user.id if user else None})
        return cookie, Visitor(user, self._csrf(nonce))

    def attach(self, request: Request, response: Response, cookie: str) -> None:
        secure = self._https or request.url.scheme == "https"
        response.set_cookie(
            COOKIE, cookie, max_age=MAX_AGE, httponly=True, samesite="strict", secure=secure, path="/console"
        )

    def end(self, request: Request, response: Response) -> None:
        """Sign out: the session is revoked on the server (a copy of the cookie is dead too) and the cookie dropped."""
        data = self._load(request)
        if data is not None:
            self._revoked.revoke(data["nonce"])
        response.delete_cookie(COOKIE, path="/console")

    def check_csrf(self, request: Request, token: object) -> Visitor:
        """The visitor, if ``token`` is their session's CSRF token; else 403 (fails closed)."""
        visitor = self.visitor(request)
        if visitor is None or not isinstance(token, str) or not hmac.compare_digest(visitor.csrf, token):
            raise ConsoleError(403, "the form's CSRF token is missing or not this session's — reload the page")
        return visitor

    def _load(self, request: Request) -> dict[str, Any] | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._serializer.loads(raw, max_age=MAX_AGE)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict) or not isinstance(data.get("nonce"), str) or data["nonce"] in self._revoked:
            return None
        return data

    def _csrf(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), "sha256").hexdigest()
