"""Find the application: the module that offers a deployment's tools and models.

Like uvicorn's ``module:attribute``, an app is named by import path — ``CHAMBERLAIN_APP``
or ``--app`` — and the working directory is importable, so a project's own code is found.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass

from agents.models import ModelRegistry
from tools.registry import ToolRegistry

DEFAULT_APP = "examples.quickstart.app"


@dataclass(frozen=True)
class App:
    tools: ToolRegistry
    models: ModelRegistry


def load_app(name: str | None = None) -> App:
    """Import ``name`` (default: ``$CHAMBERLAIN_APP``, then the quickstart) and read its
    ``tools()`` and ``models()`` factories."""
    module_name = name or os.environ.get("CHAMBERLAIN_APP", DEFAULT_APP)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    return App(tools=module.tools(), models=module.models())
