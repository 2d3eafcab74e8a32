"""Docs that cannot rot: every ``bash`` and ``python`` block of the quickstart and the how-tos
runs, in page order, from a fresh directory outside the repository, with a new user's
environment. ``deploy.md`` is not run (it needs a Temporal cluster, PostgreSQL and GPU hosts);
its Python and the private-model page's ``models.yaml`` entries are checked instead."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from chamberlain.agents import ModelCatalog
from tests.docs.blocks import Block, blocks

DOCS = Path(__file__).parents[2] / "docs"
RUN = ["quickstart.md", *(f"howto/{p.name}" for p in sorted((DOCS / "howto").glob("*.md")))]
BIN = Path(sys.executable).parent


def new_user_env() -> dict[str, str]:
    """No settings of this session: a reader's shell with Chamberlain installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAMBERLAIN_", "TEMPORAL_", "PYTHONPATH"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "COLUMNS": "200"}


class Reader:
    """Runs a page's blocks as a reader would, following its ``cd``s."""

    def __init__(self, home: Path) -> None:
        self.cwd, self.env = home, new_user_env()
        self.background: list[subprocess.Popen[bytes]] = []
        self.waiting_for: str | None = None

    def run(self, block: Block) -> None:
        if block.lang == "python" and block.title:
            path = self.cwd / block.title
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.body, "utf-8")
            return
        if self.waiting_for:
            self._wait(self.waiting_for)
        if block.mark and block.mark.startswith("background "):
            log = (self.cwd / f"background-{block.line}.log").open("wb")
            process = subprocess.Popen(
                ["bash", "-c", block.body], cwd=self.cwd, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
            self.background.append(process)
            self.waiting_for = block.mark.split(" ", 1)[1]
            return
        if block.lang == "python":
            script = self.cwd / "_docs_block.py"
            script.write_text(block.body, "utf-8")
            args = [sys.executable, str(script)]
        else:
            marker = self.cwd / ".docs-cwd"
            args = ["bash", "-e", "-o", "pipefail", "-c", f"{block.body}\npwd > {marker}"]
        done = subprocess.run(args, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=300)
        output = f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        assert done.returncode == 0, f"{block.where()} failed:\n{block.body}\n{output}"
        assert "Traceback" not in done.stderr, f"{block.where()}: {done.stderr[-3000:]}"
        if block.lang == "bash":
            self.cwd = Path((self.cwd / ".docs-cwd").read_text().strip())

    def _wait(self, url: str) -> None:
        for _ in range(240):
            if any(p.poll() is not None for p in self.background):
                raise AssertionError(f"a background block exited before {url} answered")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    self.waiting_for = None
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{url} never answered")

    def stop(self) -> None:
        for process in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[Reader]:
    reader = Reader(tmp_path)
    yield reader
    reader.stop()


@pytest.mark.slow
@pytest.mark.parametrize("page", RUN)
def test_every_block_of_the_page_runs(page: str, reader: Reader) -> None:
    runnable = [b for b in blocks(DOCS / page) if b.lang in {"bash", "python"}]
    assert runnable, f"{page} has no runnable blocks"
    for block in runnable:
        reader.run(block)


def test_the_model_catalog_entries_load() -> None:
    entries = [b for b in blocks(DOCS / "howto" / "private-model.md") if b.lang == "yaml" and "models:" in b.body]
    assert len(entries) == 5  # vLLM, SGLang, Ollama, llama.cpp, a gateway
    for block in entries:
        catalog = ModelCatalog.model_validate(yaml.safe_load(block.body))
        assert catalog.models[0].endpoint.endswith("/v1"), block.where()


def test_the_deployment_guides_python_compiles_and_names_real_settings() -> None:
    page = (DOCS / "deploy.md").read_text("utf-8")
    for block in blocks(DOCS / "deploy.md"):
        if block.lang == "python":
            compile(block.body, block.where(), "exec")
    from chamberlain.server._settings import ServerSettings

    for name in ServerSettings.model_fields:  # the guide speaks of every server setting it needs by its real name
        if name in {"temporal_address", "namespace", "webhooks", "users", "public_url", "console_secret"}:
            assert f"CHAMBERLAIN_{name.upper()}" in page, name
    for variable in ("CHAMBERLAIN_GRANT_SECRET", "CHAMBERLAIN_PAYLOAD_KEYS", "CHAMBERLAIN_AUDIT_KEY", "TEMPORAL_TLS"):
        assert variable in page
