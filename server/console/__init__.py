"""The ops console: server-rendered pages (Jinja2, htmx served from this package) over the
same runs, approvals and audit the JSON APIs expose, for people signed in with a password.

``mount_console(app, temporal, settings)`` adds it to the HTTP server; ``ensure_demo_admin``
and ``hash_password`` make its users (see :mod:`.access`)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from chamberlain.server._settings import ServerSettings
from chamberlain.server._temporal import TemporalConnection
from chamberlain.server.console.access import DemoAdmin, ensure_demo_admin, hash_password
from chamberlain.server.console.errors import ConsoleError, SignInRequired
from chamberlain.server.console.routes import TEMPLATES, console_router
from chamberlain.server.console.sessions import REVOKED_FILE, RevokedSessions, Sessions, session_secret

__all__ = ["DemoAdmin", "ensure_demo_admin", "hash_password", "mount_console"]


def mount_console(app: FastAPI, temporal: TemporalConnection, settings: ServerSettings) -> None:
    """Serve the console under ``/console`` with the app's user directory (``app.state.users``)
    and run index (``app.state.run_index``)."""
    revoked = RevokedSessions(settings.ensure_data() / REVOKED_FILE)
    sessions = Sessions(session_secret(settings), app.state.users, settings.public_url, revoked)
    app.include_router(console_router(temporal, settings, sessions, app.state.users, app.state.run_index))
    app.mount("/console/static", StaticFiles(directory=Path(__file__).with_name("static")), name="console-static")

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleError)
        visitor = sessions.visitor(request)
        context = {
            "message": exc.message,
            "status": exc.status,
            "user": visitor.user if visitor else None,
            "csrf": visitor.csrf if visitor else "",
        }
        return TEMPLATES.TemplateResponse(request, "error.html", context, status_code=exc.status)

    async def sign_in_first(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        return RedirectResponse(f"/console/signin?next={exc.next_url}", 303)

    app.add_exception_handler(ConsoleError, refused)
    app.add_exception_handler(SignInRequired, sign_in_first)
