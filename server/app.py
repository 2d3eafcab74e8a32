"""Find the application: the module that offers a deployment's tools, models and policies.

Like uvicorn's ``module:attribute``, an app is named by import path — ``CHAMBERLAIN_APP``
or ``--app`` — and the working directory is importable, so a project's own code is found.
An app's own Cedar policies (a ``POLICIES`` folder) join the shipped ones.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass

from chamberlain.agents.exceptions import SpecIssue
from chamberlain.agents.models import ModelRegistry
from chamberlain.agents.safety import review_graph
from chamberlain.agents.spec import GraphSpec
from chamberlain.tools.registry import ToolRegistry
from chamberlain.workflows.audit import AuditLog
from chamberlain.workflows.gate import Gate
from chamberlain.workflows.policy import PolicyEngine

DEFAULT_APP = "chamberlain.examples.quickstart.app"


@dataclass(frozen=True)
class App:
    tools: ToolRegistry
    models: ModelRegistry
    policies: PolicyEngine

    def gate(self, audit_url: str) -> Gate:
        """The permission gate for this app's tools, auditing to ``audit_url``."""
        return Gate(self.policies, AuditLog(audit_url), self.tools)

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
    folders = [module.POLICIES] if hasattr(module, "POLICIES") else []
    return App(tools=module.tools(), models=module.models(), policies=PolicyEngine.load(*folders))
