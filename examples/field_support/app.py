"""The scenario's tools and models: the knowledge tools over the shipped corpus, the embedded
small model and the company's larger private model, and the gate with the knowledge policy.

``FIELD_SUPPORT_CORPUS`` points at another corpus folder; ``FIELD_SUPPORT_PRIVATE_URL`` at the
private model's OpenAI-compatible server. Without one, the embedded model stands in for it
(announced), so the scenario runs on a laptop with no network.
"""

from __future__ import annotations

import logging
import os
from functools import cache
from pathlib import Path

from chamberlain.agents import ModelCatalog, ModelRegistry
from chamberlain.tools import ToolRegistry
from chamberlain.tools.knowledge import POLICIES, KnowledgeBase, knowledge_tools
from chamberlain.workflows import GRANT_SECRET_ENV, AuditLog, Gate, PolicyEngine, grant_secret, persisted_secret

DATA = Path(os.environ.get("CHAMBERLAIN_DATA", ".chamberlain"))
CORPUS = Path(__file__).with_name("corpus")
PRIVATE_MODEL = "qwen2.5-14b-instruct"
log = logging.getLogger("chamberlain.examples.field_support")


@cache
def knowledge(folder: str | None = None) -> KnowledgeBase:
    """The knowledge base, loaded and embedded once per process (~4 s)."""
    return KnowledgeBase.load(folder or os.environ.get("FIELD_SUPPORT_CORPUS", str(CORPUS)))


def tools() -> ToolRegistry:
    return knowledge_tools(knowledge())


def models() -> ModelRegistry:
    """The models of ``models.yaml``: the embedded one at ``$CHAMBERLAIN_EMBEDDED_URL`` when set;
    the private one at ``$FIELD_SUPPORT_PRIVATE_URL``, else the embedded model stands in."""
    catalog = ModelCatalog.load(Path(__file__).with_name("models.yaml"))
    private: dict[str, object]
    if url := os.environ.get("FIELD_SUPPORT_PRIVATE_URL"):
        private = {"endpoint": url}
    else:
        log.warning("no FIELD_SUPPORT_PRIVATE_URL: the embedded model stands in for %s", PRIVATE_MODEL)
        private = {"embedded": True, "model": "smollm2-135m", "structured_output": "json_object"}
    catalog = catalog.model_copy(
        update={"models": [m.model_copy(update=private) if m.name == PRIVATE_MODEL else m for m in catalog.models]}
    )
    return ModelRegistry.from_catalog(catalog, embedded_url=os.environ.get("CHAMBERLAIN_EMBEDDED_URL"))


def gate(tools: ToolRegistry) -> Gate:
    """The permission gate over ``tools``: the shipped Cedar policies and the knowledge policy,
    audited next to the data; tickets signed with ``$CHAMBERLAIN_GRANT_SECRET``, else a key
    kept next to the data."""
    secret = grant_secret() if os.environ.get(GRANT_SECRET_ENV) else persisted_secret(DATA)
    return Gate(PolicyEngine.load(POLICIES), AuditLog(f"sqlite:///{DATA / 'support-audit.sqlite'}"), tools, secret)
