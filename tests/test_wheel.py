"""The built wheel, installed into a fresh virtualenv and used from outside the repository:
it holds only the ``chamberlain`` package, and the quickstart validates and runs from it.

The wheel builds from a copy of the work tree (the build backend, setuptools>=68, from PyPI
or pip's cache: the only network used), installs with ``--no-deps``, and the dependencies
come from this venv's site-packages through a ``.pth`` file (whose own ``.pth`` files, the
editable install's finder among them, are not processed there), so nothing else downloads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from chamberlain.agents import EmbeddedModelServer

ROOT = Path(__file__).parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".chamberlain", ".*cache")

pytestmark = pytest.mark.slow


def sh(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the fresh venv's bin folder)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=SKIP)
    pip = [sys.executable, "-m", "pip"]
    sh(*pip, "wheel", "--no-deps", "-q", "-w", work / "dist", ".", cwd=source)  # setuptools>=68 from PyPI
    [wheel] = (work / "dist").glob("chamberlain-*.whl")
    venv = work / "venv"
    sh(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
    sh(*pip, "--python", venv / "bin" / "python", "install", "--no-deps", "-q", wheel, cwd=work)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(sh(venv / "bin" / "python", "-c", purelib, cwd=work).stdout.strip())
    (site / "zz_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return wheel, venv / "bin"


def test_the_wheel_holds_only_the_chamberlain_package(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"chamberlain"}
    assert "chamberlain/examples/quickstart/graph.yaml" in names
    assert any(n.startswith("chamberlain/examples/quickstart/policies/") and n.endswith(".cedar") for n in names)
    assert any(n.startswith("chamberlain/workflows/policies/") and n.endswith(".cedar") for n in names)


def test_the_installed_wheel_validates_and_runs_the_quickstart_from_elsewhere(
    installed: tuple[Path, Path], tmp_path: Path, embedded_model: EmbeddedModelServer
) -> None:
    _, bin_dir = installed
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAMBERLAIN_", "PYTHON"))}
    env |= {"CHAMBERLAIN_DATA": str(tmp_path / "data"), "QUICKSTART_DB": str(tmp_path / "shop.sqlite")}
    env |= {"CHAMBERLAIN_EMBEDDED_URL": embedded_model.base_url, "COLUMNS": "200"}
    where = sh(bin_dir / "python", "-c", "import chamberlain; print(chamberlain.__file__)", cwd=tmp_path, env=env)
    assert where.stdout.strip().startswith(str(bin_dir.parent)), where.stdout  # the wheel, not the work tree

    graph, cli = "examples/quickstart/graph.yaml", bin_dir / "chamberlain"
    validated = sh(cli, "graph", "validate", graph, cwd=tmp_path, env=env)
    assert f"ok {graph}" in validated.stdout
    bob = ["--as", "bob", "--role", "customer"]
    ran = sh(cli, "graph", "run", graph, "--input", '{"message": "refund A1002"}', *bob, cwd=tmp_path, env=env)
    assert '"reply": "Refunded 120.5 CNY"' in ran.stdout and '"status": "completed"' in ran.stdout
