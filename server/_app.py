"""Find the application: the module that offers a deployment's tools, models and policies.

Like uvicorn's ``module:attribute``, an app is named by import path — ``CHAMBERLAIN_APP``
or ``--app`` — and the working directory is importable, so a project's own code is found.
An app's own Cedar policies (a ``POLICIES`` folder) join the shipped ones, and its
``setup()`` (seeding an embedded database, say) runs before ``chamberlain dev`` or a worker serves.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chamberlain.agents._exceptions import SpecIssue
from chamberlain.agents._models import ModelRegistry
from chamberlain.agents._safety import review_graph
from chamberlain.agents._spec import GraphSpec
from chamberlain.tools._registry import ToolRegistry
from chamberlain.workflows._audit import AuditLog
from chamberlain.workflows._gate import Gate, GateNotConfigured, grant_secret
from chamberlain.workflows._policy import PolicyEngine

DEFAULT_APP = "chamberlain.examples.quickstart.app"


@dataclass(frozen=True)
class App:
    tools: ToolRegistry
    models: ModelRegistry
    policies: PolicyEngine
    name: str = DEFAULT_APP
    setup: Callable[[], object] | None = None

    def gate(self, audit_url: str, secret: str | bytes | None) -> Gate:
        """The permission gate for this app's tools, auditing to ``audit_url`` and signing
        tickets with ``secret`` (``None``: ``$CHAMBERLAIN_GRANT_SECRET``). Refuses to build one
        without either: a worker or run with no audit log or shared key must not start."""
        if not audit_url:
            raise GateNotConfigured(
                "the audit log URL (--audit / CHAMBERLAIN_AUDIT) is empty: the gate records every decision "
                "and effect there; give a database URL such as sqlite:///.chamberlain/audit.sqlite"
            )
        return Gate(self.policies, AuditLog(audit_url), self.tools, grant_secret(secret))

    def development_gate(self, folder: Path) -> Gate:
        """The explicit, announced development gate (:meth:`Gate.development`) in ``folder``."""
        return Gate.development(self.tools, folder, self.policies)

    def review(self, spec: GraphSpec) -> list[SpecIssue]:
        """The static safety checks of a graph against this app's tools, models and policies."""
        return review_graph(spec, self.tools, self.models, bounded=self.policies.bounded)


def load_app(name: str | None = None) -> App:
    """Import ``name`` (default: ``$CHAMBERLAIN_APP``, then the quickstart) and read its
    ``tools()`` and ``models()`` factories and its ``POLICIES`` folder, if it has one."""
    module_name = name or os.environ.get("CHAMBERLAIN_APP", DEFAULT_APP)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    missing = [f"{name}()" for name in ("tools", "models") if not callable(getattr(module, name, None))]
    if missing:
        raise AppError(f"app {module_name} lacks {' and '.join(missing)} — define them, or pick another --app")
    folders = [module.POLICIES] if hasattr(module, "POLICIES") else []
    return App(
        tools=module.tools(),
        models=module.models(),
        policies=PolicyEngine.load(*folders),
        name=module_name,
        setup=getattr(module, "setup", None),
    )


class AppError(Exception):
    """The app named by --app / CHAMBERLAIN_APP cannot serve."""
