"""``chamberlain init NAME``: a business's own project, ready to run on the embedded defaults.

The template (``scaffold_template/``, shipped in the package) is a working project whose
package is called ``myproject``; :func:`scaffold` copies it and renames that word to the new
package's name. The template is linted with the code, and a test scaffolds a project and runs
its own tests, so what ``init`` writes always works.
"""

from __future__ import annotations

import keyword
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from chamberlain.agents._schema import SCHEMA_FILE

TEMPLATE = Path(__file__).with_name("scaffold_template")
PLACEHOLDER = "myproject"
_RENAMED = {"gitignore": ".gitignore"}  # dotfiles are not package data
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


class ScaffoldError(ValueError):
    """``init`` cannot create the project: a bad name or an existing folder."""


def package_name(name: str) -> str:
    """The Python package of project ``name``: lower case, ``-`` as ``_`` (``acme-returns`` → ``acme_returns``)."""
    if not _NAME.fullmatch(name):
        raise ScaffoldError(
            f"project name {name!r}: use a letter, then letters, digits, '-' or '_' (at most 64), e.g. acme"
        )
    package = name.lower().replace("-", "_")
    taken = {"chamberlain", "tests", "test", PLACEHOLDER} | sys.stdlib_module_names | packages_distributions().keys()
    if keyword.iskeyword(package) or package in taken:  # "json": the project's tests would import the stdlib's
        raise ScaffoldError(f"project name {name!r}: {package} would shadow another module — pick another name")
    return package


def _generated(relative: Path) -> bool:
    """Caches that tools leave in the template folder (``__pycache__``, ``.ruff_cache``)."""
    return any(part == "__pycache__" or part.startswith(".") for part in relative.parts)


def scaffold(name: str, parent: Path) -> Path:
    """Create ``parent/name`` from the template and return it; refuse a folder that exists."""
    package = package_name(name)
    target = parent / name
    if target.exists():
        raise ScaffoldError(f"{target} already exists — init never overwrites; pick another name or folder")
    files = [f for f in sorted(TEMPLATE.rglob("*")) if f.is_file() and not _generated(f.relative_to(TEMPLATE))]
    if not files:
        raise ScaffoldError(f"the project template is missing from {TEMPLATE} — reinstall chamberlain")
    target.mkdir(parents=True)
    for source in files:
        relative = source.relative_to(TEMPLATE)
        parts = [_RENAMED.get(part, part.replace(PLACEHOLDER, package)) for part in relative.parts]
        destination = target.joinpath(*parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text("utf-8").replace(PLACEHOLDER, package).replace(PLACEHOLDER.upper(), package.upper())
        destination.write_text(text, "utf-8")
    # the graphs' `$schema` comment points here: editors complete and check graph files offline
    (target / package / "graph.schema.json").write_text(SCHEMA_FILE.read_text("utf-8"), "utf-8")
    return target
