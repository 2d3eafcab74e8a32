"""A user's first hour: the commands of the README and docs, run verbatim from a directory
outside the repository, with an empty data folder — as real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from chamberlain.agents import EmbeddedModelServer
from chamberlain.server._auth import token_digest
from chamberlain.workflows import DevServer
from chamberlain.workflows._devserver import free_port

CHAMBERLAIN = str(Path(sys.executable).with_name("chamberlain"))
SECRET = "promo-helpdesk-secret-for-the-first-run-test"


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a new user: no app, data or model settings of this test session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAMBERLAIN_", "TEMPORAL_", "QUICKSTART_"))}
    return {**env, "COLUMNS": "200", "CHAMBERLAIN_DATA": str(tmp_path / "fresh" / ".chamberlain"), **extra}


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_demo_starter_runs_with_an_empty_data_folder(
    tmp_path: Path, dev_server: DevServer, embedded_model: EmbeddedModelServer
) -> None:
    """`make demo` on a fresh clone: the data folder does not exist, the starter brings its own
    model, and it ends with the console's URL and the demo admin's password — which sign in to
    a console listing the demo's runs with their steps (``--serve``: kept up as in a terminal)."""
    env = clean_env(tmp_path, TEMPORAL_ADDRESS=dev_server.address, QUICKSTART_DB=str(tmp_path / "shop.sqlite"))
    command = [sys.executable, "-m", "chamberlain.examples.quickstart.starter", "--serve", "--port", str(free_port())]
    errors = (tmp_path / "starter-stderr.txt").open("w")
    starter = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        assert starter.stdout is not None
        printed = []
        deadline = time.monotonic() + 280
        while time.monotonic() < deadline:
            line = starter.stdout.readline()
            assert line, "the starter ended before printing the console: " + "".join(printed)[-3000:]
            printed.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(printed)
        assert "chain intact" in text and "Refunded 120.5 CNY" in text
        url = re.search(r"ops console\s+(http://127\.0\.0\.1:\d+)/console", text)
        admin = re.search(r"sign in as (\S+), password (\S+) \(shown only now\)", text)
        assert url and admin, text
        runs = re.findall(r"(quickstart-[0-9a-f]{8}): ", text)
        assert len(runs) == 3, text

        with httpx.Client(base_url=url[1], timeout=30) as http:
            form = http.get("/console/signin")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf, form.text
            signed = http.post("/console/signin", data={"csrf": csrf[1], "user": admin[1], "password": admin[2]})
            assert signed.status_code == 303, signed.text
            listed = http.get("/console/runs", params={"principal": "bob"})
            assert runs[1] in listed.text
            shown = http.get(f"/console/runs/{runs[1]}")
            assert shown.status_code == 200 and "Refunded 120.5 CNY" in shown.text
            assert all(f'data-node="{node}"' in shown.text for node in ("intent", "refund", "done"))
        assert (tmp_path / "fresh" / ".chamberlain" / "quickstart-model.log").exists()
        kept = [path for path in (tmp_path / "fresh").rglob("*") if path.is_file()]  # users, logs, databases
        assert kept and not [path for path in kept if admin[2].encode() in path.read_bytes()]  # printed, never stored
    finally:
        starter.send_signal(signal.SIGINT)  # Ctrl-C
        code = starter.wait(30)
        errors.close()
    assert code == 0, (tmp_path / "starter-stderr.txt").read_text()[-3000:]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["graph", "validate", "examples/quickstart/graph.yaml"],
        ["graph", "validate", "examples/promo_returns/graph.yaml", "--app", "chamberlain.examples.promo_returns.app"],
        ["graph", "schema"],
    ],
)
def test_readme_commands_work_from_any_directory(tmp_path: Path, args: list[str]) -> None:
    done = run([CHAMBERLAIN, *args], tmp_path, clean_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def served(tmp_path: Path, dev_server: DevServer) -> Iterator[tuple[str, dict[str, str]]]:
    """`CHAMBERLAIN_WEBHOOKS=… chamberlain serve` from outside the repository, with one API user."""
    users = tmp_path / "users.yaml"
    maria = {"id": "maria", "roles": ["manager"], "token_sha256": token_digest("t-m")}
    users.write_text(yaml.safe_dump({"users": [maria]}))
    port = free_port()
    settings = {
        "CHAMBERLAIN_WEBHOOKS": "examples/promo_returns/webhooks.yaml",
        "CHAMBERLAIN_USERS": str(users),
        "CHAMBERLAIN_TEMPORAL_ADDRESS": dev_server.address,
        "CHAMBERLAIN_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PROMO_HELPDESK_SECRET": SECRET,
    }
    env = clean_env(tmp_path, **settings)
    command = [CHAMBERLAIN, "serve", "--port", str(port)]
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
                time.sleep(0.1)
        yield url, env
    finally:
        server.terminate()
        server.wait(10)


def test_serve_accepts_a_signed_webhook_and_its_run_url_answers(
    tmp_path: Path, served: tuple[str, dict[str, str]]
) -> None:
    url, env = served
    event = tmp_path / "event.json"
    event_id = f"evt-{time.time_ns()}"
    body = {"event_id": event_id, "ticket": "T-1", "customer_id": "C00001", "message": "退货 A1001"}
    event.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    sources = ["--sources", "examples/promo_returns/webhooks.yaml", "--url", url]
    sent = run([CHAMBERLAIN, "webhook", "send", "helpdesk", str(event), *sources], tmp_path, env)
    assert sent.returncode == 0 and sent.stdout.startswith("202"), sent.stdout + sent.stderr
    accepted = json.loads(sent.stdout[sent.stdout.index("{") :])
    assert accepted["url"] == f"{url}/runs/{accepted['run_id']}"

    assert httpx.get(accepted["url"], timeout=30).status_code == 401
    shown = httpx.get(accepted["url"], headers={"Authorization": "Bearer t-m"}, timeout=30)
    assert shown.status_code == 200, shown.text
    assert shown.json()["run_id"] == accepted["run_id"] and shown.json()["graph"] == "promo-returns"
