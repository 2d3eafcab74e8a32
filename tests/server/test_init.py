"""`chamberlain init NAME`: the new project's own tests pass at once, run as a user runs them —
from a directory outside the repository, with this environment's Python; nothing downloads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chamberlain.server._scaffold import PLACEHOLDER, TEMPLATE, ScaffoldError, package_name, scaffold

BIN = Path(sys.executable).parent


def clean_env() -> dict[str, str]:
    """A new user's environment: none of this session's Chamberlain or Temporal settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAMBERLAIN_", "TEMPORAL_", "PYTHONPATH"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "COLUMNS": "200"}


def run(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout)


def test_init_then_the_projects_own_tests_pass(tmp_path: Path) -> None:
    made = run(["chamberlain", "init", "acme-returns"], tmp_path)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "acme-returns"
    assert (project / "acme_returns" / "graph.yaml").exists() and (project / ".gitignore").exists()
    texts = [f.read_text("utf-8") for f in project.rglob("*") if f.is_file()]
    assert not any(PLACEHOLDER in text or PLACEHOLDER.upper() in text for text in texts)
    assert 'dependencies = ["chamberlain"]' in (project / "pyproject.toml").read_text("utf-8")
    assert "ACME_RETURNS_HELPDESK_SECRET" in (project / "acme_returns" / "webhooks.yaml").read_text("utf-8")

    tests = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], project)
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert "14 passed" in tests.stdout  # graphs, policy, five evaluation cases, the workflow, the webhook

    lint = run([str(BIN / "ruff"), "check", "--no-cache", "."], project)
    assert lint.returncode == 0, lint.stdout
    shown = run(["chamberlain", "graph", "validate", "acme_returns/graph.yaml", "--app", "acme_returns.app"], project)
    assert shown.returncode == 0 and "graph 'refund-request'" in shown.stdout, shown.stderr
    exported = run(["chamberlain", "graph", "export", "acme_returns.graphs:order_status"], project)
    assert exported.returncode == 0 and "name: order-status" in exported.stdout, exported.stderr


def test_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "mine.txt").write_text("keep me")
    done = run(["chamberlain", "init", "acme"], tmp_path)
    assert done.returncode == 1 and "already exists" in done.stderr and "Traceback" not in done.stderr
    assert [p.name for p in (tmp_path / "acme").iterdir()] == ["mine.txt"]
    assert (tmp_path / "acme" / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize("name", ["../acme", "acme/evil", "", "1acme", "class", "chamberlain", "客户", "a b"])
def test_a_name_that_is_not_a_package_is_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    with pytest.raises(ScaffoldError, match="project name"):
        scaffold(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_names_the_fix_for_a_bad_name(tmp_path: Path) -> None:
    done = run(["chamberlain", "init", "../escape"], tmp_path)
    assert done.returncode == 1 and "use a letter" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path.parent / "escape").exists()


def test_package_names() -> None:
    assert package_name("Acme-Returns") == "acme_returns"
    assert TEMPLATE.is_dir() and (TEMPLATE / PLACEHOLDER / "graph.yaml").exists()
