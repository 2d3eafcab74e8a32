"""An earlier version of this project, checked out of its own history, to run as an old worker.

An upgrade test needs the code that put runs in flight, not a model of it: the commit before a
patch was introduced is found by the patch's ID in the history and written to a folder with
``git archive`` (the repository's index and work tree stay untouched). Its ``chamberlain/``
folder of symlinks resolves inside that folder, so ``PYTHONPATH=<folder>`` imports the old code.
A shallow clone lacks that history: the test is skipped there, saying why (CI must not fail on
how it was cloned); a full clone without the commit fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


class ShallowClone(LookupError):
    """This clone has no history to take the old version from."""


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LookupError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def before_patch(patch_id: str) -> str:
    """The commit just before the one that introduced ``patch_id`` into the workflow's code."""
    if _git("rev-parse", "--is-shallow-repository") == "true":
        raise ShallowClone(f"the code before patch {patch_id!r} is not in a shallow clone (git fetch --unshallow)")
    try:
        found = _git("log", "--reverse", "--format=%H", "-S", f'"{patch_id}"', "--", "workflows/")
        if not found:
            raise LookupError(f"no commit introduces {patch_id!r}")
        return _git("rev-parse", "--verify", f"{found.splitlines()[0]}^")
    except (LookupError, OSError) as exc:
        raise LookupError(
            f"the code before patch {patch_id!r} is needed from this repository's git history ({exc}); "
            "run the upgrade test from a full clone (git fetch --unshallow)"
        ) from exc


def materialise(commit: str, folder: Path) -> Path:
    """Write the tree of ``commit`` into ``folder`` (created), without touching the repository."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(["git", "archive", commit], cwd=ROOT, stdout=subprocess.PIPE)
    assert archive.stdout is not None
    subprocess.run(["tar", "-x", "-C", str(folder)], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait() != 0:
        raise LookupError(f"git archive {commit} failed")
    return folder


def environment(folder: Path) -> dict[str, str]:
    """This process's environment (payload keys, ledger) with the old tree first on the path."""
    return {**os.environ, "PYTHONPATH": str(folder)}


def imported_from(folder: Path) -> list[str]:
    """Where the old tree's interpreter finds the layers and the test support (an editable
    install of this checkout must not win over ``PYTHONPATH``)."""
    code = "import chamberlain.workflows as w, tests.support.toolbox as t; print(w.__file__); print(t.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=environment(folder), capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def spawn_worker(folder: Path, address: str, task_queue: str) -> subprocess.Popen[str]:
    """The old tree's own test worker (``tests.support.worker_process``), on ``task_queue``."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.worker_process", address, task_queue],
        cwd=folder,
        env=environment(folder),
        stdout=subprocess.PIPE,
        text=True,
    )
