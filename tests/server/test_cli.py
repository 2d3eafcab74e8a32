"""The ``chamberlain`` command as a user runs it: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
CLI = [sys.executable, "-c", "from server.cli import main; main()"]


def chamberlain(*args: str, app: str = "tests.support.toolbox") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHAMBERLAIN_APP": app, "COLUMNS": "200"}
    return subprocess.run([*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_validate_prints_every_error_with_file_and_line_and_fails(tmp_path: Path) -> None:
    broken = (ROOT / "tests/graphs/five_steps.yaml").read_text().replace("tool: erp.refund", "tool: erp.refundz")
    broken = broken.replace("args: {order_id: order_id}", "args: {order_id: order_idd}")
    path = tmp_path / "returns.yaml"
    path.write_text(broken)
    done = chamberlain("graph", "validate", str(path))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error {path}:31: expression 'order_idd' reads unknown state field 'order_idd' — did you mean 'order_id'?",
        f"error {path}:36: node 'refund' uses unknown tool 'erp.refundz' — did you mean 'erp.refund'?",
    ]


def test_validate_accepts_good_graphs() -> None:
    done = chamberlain("graph", "validate", "tests/graphs/five_steps.yaml", "tests/graphs/loop.yaml")
    assert done.returncode == 0, done.stderr
    assert "graph 'five-steps', 5 nodes" in done.stdout and "graph 'loop', 3 nodes" in done.stdout


def test_graph_run_in_process_prints_the_result(embedded_model: object) -> None:
    done = chamberlain(
        "graph", "run", "examples/quickstart/graph.yaml", "--input", '{"message": "refund A1002"}',
        app="chamberlain.examples.quickstart.app",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout[done.stdout.rindex("\n{") :])
    assert result["status"] == "completed" and result["output"]["reply"] == "Refunded 120.5 CNY"


def test_schema_is_the_graph_json_schema() -> None:
    done = chamberlain("graph", "schema")
    schema = json.loads(done.stdout)
    assert schema["title"] == "GraphSpec" and "$schema" in schema["properties"]


def test_webhook_sign_prints_headers_that_verify(tmp_path: Path) -> None:
    from chamberlain.server.signatures import verify

    sources = tmp_path / "webhooks.yaml"
    sources.write_text(
        "sources:\n  - name: hub\n    secrets: [env:CLI_TEST_SECRET]\n    payload: tests.support.payloads:Counted\n"
        "    graph: tests/graphs/loop.yaml\n    signature: {header: X-Sig, encoding: base64}\n"
    )
    event = tmp_path / "event.json"
    event.write_bytes(b'{"limit": 1, "customer": "c"}')
    env = {**os.environ, "CLI_TEST_SECRET": "s3cr3t", "COLUMNS": "200"}
    done = subprocess.run([*CLI, "webhook", "sign", "hub", str(event), "--sources", str(sources), "--event-id", "e-1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    headers = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert headers["X-Event-Id"] == "e-1" and headers["Content-Type"] == "application/json"
    verify([b"s3cr3t"], event.read_bytes(), headers["X-Sig"], scheme="hmac-sha256", encoding="base64")
    assert "s3cr3t" not in done.stdout
