"""Console access over real HTTP: passwords, the session cookie's flags, CSRF on every form,
console roles enforced server-side, the demo admin, and the vendored front-end files."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml

from chamberlain.server._auth import UserDirectory
from chamberlain.server.console import ensure_demo_admin
from chamberlain.server.console.access import sign_in
from chamberlain.workflows import DevServer
from tests.console.console_app import PASSWORD, console_server

VENDOR = Path(__file__).parents[2] / "server" / "console" / "static" / "vendor"


@pytest.fixture
async def console(dev_server: DevServer, tmp_path: Path, ledger: Path) -> AsyncIterator[str]:
    with console_server(dev_server.address, tmp_path, ledger) as url:
        yield url


async def signed_in(url: str, user: str, password: str = PASSWORD) -> tuple[httpx.AsyncClient, httpx.Response]:
    http = httpx.AsyncClient(base_url=url)
    form = await http.get("/console/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf, form.text
    answer = await http.post("/console/signin", data={"csrf": csrf[1], "user": user, "password": password})
    return http, answer


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found[1]


async def test_sign_in_sets_a_strict_http_only_session_and_refuses_wrong_passwords(console: str) -> None:
    async with httpx.AsyncClient(base_url=console) as anonymous:
        runs = await anonymous.get("/console/runs")
        assert runs.status_code == 303 and runs.headers["location"].startswith("/console/signin")

    wrong_client, wrong = await signed_in(console, "maria", PASSWORD + "x")
    unknown_client, unknown = await signed_in(console, "nobody")
    assert wrong.status_code == 401 == unknown.status_code and "unknown user or wrong password" in wrong.text
    assert (await wrong_client.get("/console/runs")).status_code == 303  # still not signed in

    http, answer = await signed_in(console, "maria")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/runs"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert "secure" not in cookie  # served over plain http on loopback
    page = await http.get("/console/runs")
    assert page.status_code == 200 and "maria · approver" in page.text
    for client in (http, wrong_client, unknown_client):
        await client.aclose()


async def test_secure_cookie_when_the_public_url_is_https(dev_server: DevServer, tmp_path: Path, ledger: Path) -> None:
    with console_server(dev_server.address, tmp_path, ledger, public_url="https://ops.example.com") as url:
        async with httpx.AsyncClient(base_url=url) as http:
            form = await http.get("/console/signin")
    assert "; secure" in form.headers["set-cookie"].lower()  # a browser sends it back over https only


async def test_every_form_needs_its_sessions_csrf_token(console: str) -> None:
    maria, _ = await signed_in(console, "maria")
    olga, _ = await signed_in(console, "olga")
    token = csrf_of((await maria.get("/console/runs")).text)
    item = {"item": "run-x|run-x/manager/1", "outcome": "approve"}
    without = await maria.post("/console/approvals", data=item)
    olgas_token = csrf_of((await olga.get("/console/runs")).text)
    others = await maria.post("/console/approvals", data={**item, "csrf": olgas_token})
    assert without.status_code == 403 == others.status_code and "CSRF token" in without.text
    async with httpx.AsyncClient(base_url=console) as anonymous:
        signin_without = await anonymous.post("/console/signin", data={"user": "maria", "password": PASSWORD})
    assert signin_without.status_code == 403
    with_token = await maria.post("/console/approvals", data={**item, "csrf": token})
    assert with_token.status_code == 403 and "no such run waiting" in with_token.text  # got past CSRF and role
    for client in (maria, olga):
        await client.aclose()


async def test_console_roles_are_enforced_on_the_server(console: str) -> None:
    victor, _ = await signed_in(console, "victor")
    maria, _ = await signed_in(console, "maria")
    viewer_token = csrf_of((await victor.get("/console/runs")).text)
    decide = await victor.post("/console/approvals", data={"csrf": viewer_token, "item": "r|s", "outcome": "approve"})
    cancel = await victor.post("/console/runs/any/cancel", data={"csrf": viewer_token})
    marias_token = csrf_of((await maria.get("/console/runs")).text)
    approver_cancel = await maria.post("/console/runs/any/cancel", data={"csrf": marias_token})
    assert decide.status_code == 403 and "victor (viewer) may not decide" in decide.text
    assert cancel.status_code == 403 and "may not operate" in cancel.text
    assert approver_cancel.status_code == 403 and "maria (approver) may not operate" in approver_cancel.text
    for client in (victor, maria):
        await client.aclose()


def test_the_demo_admin_is_created_once_and_only_its_hash_stored(tmp_path: Path) -> None:
    path, admin = ensure_demo_admin(tmp_path)
    again_path, again = ensure_demo_admin(tmp_path)
    assert admin is not None and again is None and again_path == path
    assert admin.password not in path.read_text(encoding="utf-8") and path.stat().st_mode & 0o777 == 0o600
    directory = UserDirectory.load(path)
    assert sign_in(directory, "admin", admin.password) is not None
    assert sign_in(directory, "admin", admin.password.upper()) is None
    [stored] = yaml.safe_load(path.read_text(encoding="utf-8"))["users"]
    assert stored["console_role"] == "admin" and stored["password_argon2"].startswith("$argon2id$")


def test_vendored_front_end_files_are_the_ones_the_readme_names() -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    for name in ("htmx.min.js", "sse.min.js"):
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() in readme


async def test_a_copied_session_cookie_is_dead_after_sign_out(console: str) -> None:
    maria, _ = await signed_in(console, "maria")
    stolen = maria.cookies.get("chamberlain_session")
    assert stolen
    other, _ = await signed_in(console, "maria")  # her session in another browser lives on
    token = csrf_of((await maria.get("/console/runs")).text)
    out = await maria.post("/console/signout", data={"csrf": token})
    assert out.status_code == 303
    async with httpx.AsyncClient(base_url=console, cookies={"chamberlain_session": stolen}) as thief:
        replayed = await thief.get("/console/approvals")
        posted = await thief.post("/console/approvals", data={"csrf": token, "outcome": "approve", "item": "r|s"})
    assert replayed.status_code == 303 and replayed.headers["location"].startswith("/console/signin")
    assert posted.status_code == 403  # the old CSRF token went with the session
    assert (await other.get("/console/runs")).status_code == 200
    for client in (maria, other):
        await client.aclose()
