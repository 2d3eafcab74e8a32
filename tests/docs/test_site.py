"""The docs site builds offline with `mkdocs build --strict` (no warnings), from outside the
repository; its pages load nothing from the network, and the generated reference names every
public name of each layer and every command."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).parents[2]
ASSETS = {"script": "src", "img": "src", "link": "href", "iframe": "src", "source": "src", "video": "src"}


class ExternalAssets(HTMLParser):
    """URLs a browser would fetch on its own (scripts, styles, fonts, images) — not links."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        url = values.get(ASSETS.get(tag, ""), "") or ""
        if url.startswith(("http://", "https://", "//")):
            self.found.append(f"<{tag}> {url}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    args = [str(Path(sys.executable).with_name("mkdocs")), "build", "--strict", "-f", str(ROOT / "mkdocs.yml")]
    done = subprocess.run([*args, "-d", str(out)], cwd=out, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "WARNING" not in done.stderr, done.stderr[-4000:]
    return out


def test_the_site_fetches_nothing_from_the_network(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert len(pages) > 15
    for page in pages:
        parser = ExternalAssets()
        parser.feed(page.read_text("utf-8"))
        assert parser.found == [], f"{page.relative_to(site)}: {parser.found}"
    styles = "".join(p.read_text("utf-8") for p in site.rglob("*.css"))
    assert "fonts.googleapis" not in styles and "@import url(http" not in styles


def test_the_reference_is_generated_from_the_code(site: Path) -> None:
    api = (site / "reference" / "python-api" / "index.html").read_text("utf-8")
    for layer in ("chamberlain.agents", "chamberlain.tools", "chamberlain.workflows"):
        for name in importlib.import_module(layer).__all__:
            assert f"<code>{name}</code>" in api, f"{layer}.{name} is missing from the API reference"
    from chamberlain.server._cli import app

    cli = (site / "reference" / "cli" / "index.html").read_text("utf-8")
    for command in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        assert f"chamberlain {command}" in cli
    schema = (site / "reference" / "graph-schema" / "index.html").read_text("utf-8")
    assert all(kind in schema for kind in ("ToolNode", "ApprovalNode", "ClassifyNode", "on_error"))
    configuration = (site / "reference" / "configuration" / "index.html").read_text("utf-8")
    assert "CHAMBERLAIN_GRANT_SECRET" in configuration and "TEMPORAL_TLS_CA" in configuration
