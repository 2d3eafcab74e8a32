"""The ``chamberlain`` command as a user runs it: a real process, real files."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from chamberlain.server._temporal import payload_codec
from chamberlain.workflows import DevServer
from chamberlain.workflows._codec import PAYLOAD_KEYS_ENV, EncryptionCodec, new_key

ROOT = Path(__file__).parents[2]
QUICKSTART = "chamberlain.examples.quickstart.app"
PROMO_SOURCES = "examples/promo_returns/webhooks.yaml"  # found in the installed package from any directory
CLI = [str(Path(sys.executable).with_name("chamberlain"))]  # the installed command, as a user runs it


def chamberlain(
    *args: str, app: str = "tests.support.toolbox", cwd: Path = ROOT, **env: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHAMBERLAIN_APP": app, "COLUMNS": "200", **env}
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=90)


def test_validate_prints_every_error_with_file_and_line_and_fails(tmp_path: Path) -> None:
    broken = (ROOT / "tests/graphs/five_steps.yaml").read_text().replace("tool: erp.refund", "tool: erp.refundz")
    broken = broken.replace("args: {order_id: order_id}", "args: {order_id: order_idd}")
    path = tmp_path / "returns.yaml"
    path.write_text(broken)
    done = chamberlain("graph", "validate", str(path))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error {path}:32: expression 'order_idd' reads unknown state field 'order_idd' — did you mean 'order_id'?",
        f"error {path}:37: node 'refund' uses unknown tool 'erp.refundz' — did you mean 'erp.refund'?",
    ]


def test_validate_accepts_good_graphs() -> None:
    done = chamberlain("graph", "validate", "tests/graphs/five_steps.yaml", "tests/graphs/loop.yaml")
    assert done.returncode == 0, done.stderr
    assert "graph 'five-steps', 5 nodes" in done.stdout and "graph 'loop', 3 nodes" in done.stdout


def test_graph_run_in_process_prints_the_result(embedded_model: object, tmp_path: Path) -> None:
    message, bob = '{"message": "refund A1002"}', ["--as", "bob", "--role", "customer"]
    data = {"CHAMBERLAIN_DATA": str(tmp_path / "data"), "QUICKSTART_DB": str(tmp_path / "shop.sqlite")}
    graph = "examples/quickstart/graph.yaml"
    done = chamberlain("graph", "run", graph, "--input", message, *bob, app=QUICKSTART, **data)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout[done.stdout.rindex("\n{") :])
    assert result["status"] == "completed" and result["output"]["reply"] == "Refunded 120.5 CNY"


def test_webhook_sign_prints_headers_that_verify(tmp_path: Path) -> None:
    from chamberlain.server._sources import SourceCatalog

    sources = tmp_path / "webhooks.yaml"
    sources.write_text(
        "sources:\n  - name: hub\n    secrets: [env:CLI_TEST_SECRET]\n    payload: tests.support.payloads:Counted\n"
        f"    graph: {ROOT / 'tests/graphs/loop.yaml'}\n    signature: {{scheme: standard-webhooks}}\n"
    )
    event = tmp_path / "event.json"
    event.write_bytes(b'{"limit": 1, "customer": "c"}')
    secret = "whsec_" + base64.b64encode(b"s3cr3t-for-the-cli-test-0123456789").decode()
    done = chamberlain(
        "webhook", "sign", "hub", str(event), "--sources", str(sources), "--event-id", "e-1", CLI_TEST_SECRET=secret
    )
    assert done.returncode == 0, done.stderr
    headers = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert headers["webhook-id"] == "e-1" and headers["Content-Type"] == "application/json"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CLI_TEST_SECRET", secret)
        source = SourceCatalog.load(sources).sources[0]
        source.signature.verify(source.secret_values(), event.read_bytes(), headers, "e-1")
    assert secret not in done.stdout


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The error a command printed: exit status 1, exactly one line, no traceback."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    return done.stderr


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["graph", "validate", "no/such/graph.yaml"], "no/such/graph.yaml"),
        (["graph", "run", "tests/graphs/loop.yaml", "--input", "{limit: 2}"], "--input"),
        (["graph", "validate", "tests/graphs/loop.yaml", "--app", "no_such_app.module"], "--app"),
        (["approve", "run-1", "step-1", "--token", ""], "CHAMBERLAIN_TOKEN"),
        (["run", "list", "--address", "127.0.0.1:1"], "127.0.0.1:1"),
        (["run", "list", "--status", "exploded"], "--status"),
        (["graph", "export", "tests.support.toolbox"], "MODULE:ATTR"),
        (["webhook", "send", "helpdesk", "x.json", "--sources", PROMO_SOURCES], "PROMO_HELPDESK_SECRET"),
        (["graph", "run", "tests/graphs/loop.yaml", "--input", '{"limt": 2}'], "--input"),
        (["graph", "export", "json:dumps"], "json:dumps"),
        (["init", "json", "--in", "/tmp"], "would shadow another module"),
    ],
)
def test_known_errors_are_one_line_naming_the_flag_or_file(args: list[str], names: str) -> None:
    assert names in one_line_error(chamberlain(*args))


def test_a_file_that_is_not_utf8_is_named_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    line = one_line_error(chamberlain("graph", "run", str(path)))
    assert str(path) in line and "not UTF-8" in line
    debug = chamberlain("graph", "run", str(path), "--debug")
    assert debug.returncode == 1 and "UnicodeDecodeError" in debug.stderr


def test_audit_verify_reads_the_data_folder_and_refuses_a_log_that_is_not_there(tmp_path: Path) -> None:
    from chamberlain.workflows._audit import AuditEntry, AuditLog

    empty = tmp_path / "fresh"
    line = one_line_error(chamberlain("audit", "verify", CHAMBERLAIN_DATA=str(empty), CHAMBERLAIN_AUDIT=""))
    assert "no audit log" in line and not empty.exists()  # nothing created, nothing called intact

    data = tmp_path / "data"
    log = AuditLog(f"sqlite:///{data / 'audit.sqlite'}")
    entry = AuditEntry(
        run_id="r",
        step_id="r/a/1",
        kind="decision",
        principal="User::ann",
        action="a",
        resource='Order::"A1"',
        decision="allow",
    )
    log.append(entry)
    done = chamberlain("audit", "verify", CHAMBERLAIN_DATA=str(data), CHAMBERLAIN_AUDIT="", cwd=tmp_path)
    assert done.returncode == 0 and "1 record, chain intact" in done.stdout, done.stderr


def test_graph_run_says_rejected_when_an_approval_said_no(tmp_path: Path) -> None:
    path = tmp_path / "declined.yaml"
    path.write_text(
        "name: declined\nstate: {amount: {type: float, default: 500}}\nstart: manager\nnodes:\n"
        "  manager: {type: approval, ask: 'Refund {amount}?', approvers: [manager], on_reject: done, next: done}\n"
        "  done: {type: end, output: [amount]}\n"
    )
    done = chamberlain("graph", "run", str(path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout[done.stdout.rindex("\n{") :])["status"] == "rejected"


def test_export_prints_a_python_built_graph_as_yaml_that_loads_back(tmp_path: Path) -> None:
    from chamberlain.agents import load_graph, parse_graph

    (tmp_path / "my_graphs.py").write_text(
        f"from chamberlain.agents import load_graph\nsupport = load_graph({str(ROOT / 'tests/graphs/loop.yaml')!r})\n"
    )
    done = chamberlain("graph", "export", "my_graphs:support", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert parse_graph(done.stdout) == load_graph(ROOT / "tests/graphs/loop.yaml")


def test_schema_prints_the_packaged_schema() -> None:
    from chamberlain.agents._schema import SCHEMA_FILE

    assert chamberlain("graph", "schema").stdout == SCHEMA_FILE.read_text(encoding="utf-8")


def test_dev_refuses_webhook_graphs_the_app_cannot_run_before_starting_anything(tmp_path: Path) -> None:
    env = {"CHAMBERLAIN_WEBHOOKS": PROMO_SOURCES, "CHAMBERLAIN_DATA": str(tmp_path / "data")}
    secret = {"PROMO_HELPDESK_SECRET": "a-long-enough-secret-for-the-helpdesk"}
    done = chamberlain("dev", "--no-model", app=QUICKSTART, cwd=tmp_path, **env, **secret)
    line = one_line_error(done)
    assert "unknown tool" in line and "--app" in line
    assert not (tmp_path / "data").exists()


def test_dev_stops_its_temporal_server_when_a_later_start_fails(tmp_path: Path) -> None:
    from chamberlain.workflows._devserver import free_port

    temporal_port, ui_port = free_port(), free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        http_port = busy.getsockname()[1]
        ports = ["--port", str(temporal_port), "--ui-port", str(ui_port), "--http-port", str(http_port)]
        data = str(tmp_path / "data")
        done = chamberlain("dev", "--no-model", *ports, app=QUICKSTART, cwd=tmp_path, CHAMBERLAIN_DATA=data)
    assert done.returncode == 1 and "Traceback" not in done.stderr  # uvicorn logs the bind error, then ours:
    assert done.stderr.splitlines()[-1].startswith(f"error --http-port {http_port}: ")
    assert (tmp_path / "data" / "temporal.db").exists()  # it did start…
    with socket.socket() as probe:  # …and is gone: nothing listens on its port any more
        assert probe.connect_ex(("127.0.0.1", temporal_port)) != 0


def test_a_run_id_taken_is_one_line_naming_the_run(dev_server: DevServer, tmp_path: Path) -> None:
    """Starting a run under an ID that exists says so, and how to look at it."""
    run = f"cli-dup-{uuid.uuid4().hex[:8]}"
    start = ["run", "start", "tests/graphs/loop.yaml", "--id", run, "--address", dev_server.address]
    assert chamberlain(*start, "--task-queue", "nobody-polls-this").returncode == 0
    assert f"run {run} exists already — chamberlain run show {run}" in one_line_error(
        chamberlain(*start, "--task-queue", "nobody-polls-this")
    )


def test_the_command_line_reads_the_dev_stacks_payload_keys_when_none_are_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`chamberlain dev` keeps its keys in the data folder; a command run beside it without
    CHAMBERLAIN_PAYLOAD_KEYS encrypts with them (it sent plain payloads, which its worker refused:
    the run never ran). The deployment's own keys win when set."""
    monkeypatch.delenv(PAYLOAD_KEYS_ENV, raising=False)
    monkeypatch.setenv("CHAMBERLAIN_DATA", str(tmp_path))
    assert payload_codec() is None  # no stack has started here
    keys = DevServer(tmp_path / "temporal.db").payload_keys()
    assert payload_codec() == EncryptionCodec.parse(keys)
    own = new_key("prod1")
    monkeypatch.setenv(PAYLOAD_KEYS_ENV, own)
    assert payload_codec() == EncryptionCodec.parse(own)
