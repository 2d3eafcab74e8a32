"""A returns worker in its own process, for tests that kill it:
``python -m tests.support.returns_worker ADDRESS QUEUE``.

It serves the business tools over the shop at ``$CHAMBERLAIN_TEST_SHOP`` (a SQLite URL) with
the evaluation's scripted reader model, behind the shipped policies and a gate keyed by
``$CHAMBERLAIN_GRANT_SECRET`` — as every worker of a deployment is, so a restarted worker
admits the tickets of the one killed. It audits beside the test's ledger.

Each RMA and refund the ERP commits — or finds committed, on a retry — is counted in the ledger
(``rma`` / ``refund``, by its idempotency key); a new one then lingers a moment before its step
completes: the window between a write and its report, where a test's SIGKILL should land."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from chamberlain.tools._business import business_tools
from chamberlain.tools._seed import REFERENCE_DAY
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.contract import RefundView, RmaRequest, RmaView
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.workflows import Gate, PolicyEngine, connect, create_worker, grant_secret
from tests.support import evaluation, toolbox
from tests.support.workers import audit_log

ROOT = Path(__file__).parents[2]
SHOP_ENV = "CHAMBERLAIN_TEST_SHOP"
LINGER = 0.3  # seconds between an ERP write's commit and the step's completion


class LingeringErp(EmbeddedErp):
    """The embedded ERP, counting the writes it commits and pausing after each."""

    async def find_return(self, idempotency_key: str) -> RmaView | None:
        """A retried authorisation looks for its RMA first: finding it counts as a call too."""
        found = await super().find_return(idempotency_key)
        if found is not None:
            toolbox.record("rma", idempotency_key)
        return found

    async def authorize_return(self, request: RmaRequest, idempotency_key: str) -> RmaView:
        view = await super().authorize_return(request, idempotency_key)
        toolbox.record("rma", idempotency_key)
        await asyncio.sleep(LINGER)
        return view

    async def refund_return(self, rma: str, expected_refunded: float | None, idempotency_key: str) -> RefundView:
        view = await super().refund_return(rma, expected_refunded, idempotency_key)
        toolbox.record("refund", idempotency_key)
        await asyncio.sleep(LINGER)
        return view


def spawn(address: str, task_queue: str) -> subprocess.Popen[str]:
    """Start a returns worker process and wait until it polls its queue."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.returns_worker", address, task_queue],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


async def main(address: str, task_queue: str) -> None:
    url = os.environ[SHOP_ENV]
    erp = LingeringErp(url)
    labels = Path(url.removeprefix("sqlite:///")).parent / "labels"
    tools = business_tools(erp, EmbeddedCrm(erp.engine), labels_dir=labels, today=REFERENCE_DAY)
    gate = Gate(PolicyEngine.load(), audit_log(), tools, grant_secret())
    client = await connect(address)
    async with create_worker(client, models=evaluation.reader(), tools=tools, gate=gate, task_queue=task_queue):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
