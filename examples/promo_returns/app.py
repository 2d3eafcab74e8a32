"""The scenario's tools and models: the business tools over a seeded embedded CRM/ERP (and the
scenario's own language detection), the embedded small model, the gate with the shipped
policies and the scenario's own (``policies/``).

``PROMO_ERP`` chooses the ERP and CRM: a database URL (default: a SQLite file, seeded on
first use) or the URL of their REST services. The policy's "today" is the seed's reference
day, so the scenario gives the same answers whenever it runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import inspect

from chamberlain.agents import ModelCatalog, ModelRegistry
from chamberlain.examples.promo_returns.language import detect_language
from chamberlain.examples.promo_returns.stated import read_stated
from chamberlain.tools import REFERENCE_DAY, ToolRegistry, business_tools, crm_backend, erp_backend, seed
from chamberlain.tools.crm.contract import CrmBackend
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.contract import ErpBackend
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.workflows import GRANT_SECRET_ENV, AuditLog, Gate, PolicyEngine, grant_secret, persisted_secret

DATA = Path(os.environ.get("CHAMBERLAIN_DATA", ".chamberlain"))
POLICIES = Path(__file__).with_name("policies")  # joins the shipped Cedar policies


def database_url() -> str:
    return os.environ.get("PROMO_ERP", f"sqlite:///{DATA / 'promo-shop.sqlite'}")


def prepare() -> EmbeddedErp | None:
    """Seed the embedded systems on first use; nothing to do for REST services."""
    url = database_url()
    if url.startswith(("http://", "https://")):
        return None
    erp = EmbeddedErp(url)
    if not inspect(erp.engine).has_table("erp_order"):
        seed(erp, EmbeddedCrm(erp.engine))
    return erp


setup = prepare  # `chamberlain dev` and `chamberlain worker` seed the embedded systems before serving


def tools() -> ToolRegistry:
    url = database_url()
    return tools_over(erp_backend(url), crm_backend(url), labels_dir=DATA / "labels")


def tools_over(erp: ErpBackend, crm: CrmBackend, *, labels_dir: Path) -> ToolRegistry:
    """The scenario's tools over any ERP and CRM: the business tools, the language detection and
    the reading of what a message states literally."""
    registry = business_tools(erp, crm, labels_dir=labels_dir, today=REFERENCE_DAY)
    registry.register(detect_language)
    registry.register(read_stated)
    return registry


def models() -> ModelRegistry:
    catalog = ModelCatalog.load(Path(__file__).with_name("models.yaml"))
    return ModelRegistry.from_catalog(catalog, embedded_url=os.environ.get("CHAMBERLAIN_EMBEDDED_URL"))


def gate(tools: ToolRegistry) -> Gate:
    """The permission gate over ``tools``: the shipped Cedar policies, audited next to the data;
    tickets signed with ``$CHAMBERLAIN_GRANT_SECRET``, else a key kept next to the data."""
    secret = grant_secret() if os.environ.get(GRANT_SECRET_ENV) else persisted_secret(DATA)
    return Gate(PolicyEngine.load(POLICIES), AuditLog(f"sqlite:///{DATA / 'promo-audit.sqlite'}"), tools, secret)


def evaluation_tools(url: str) -> ToolRegistry:
    """The tools over the embedded store at ``url``, seeded if empty: ``chamberlain eval`` seeds
    one and gives each case a fresh copy of it."""
    erp = EmbeddedErp(url)
    if not inspect(erp.engine).has_table("erp_order"):
        seed(erp, EmbeddedCrm(erp.engine))
    folder = Path(url.removeprefix("sqlite:///")).parent
    return tools_over(erp, EmbeddedCrm(erp.engine), labels_dir=folder / "labels")
