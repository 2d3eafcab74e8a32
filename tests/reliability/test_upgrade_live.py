"""Upgrades with runs in flight, live: the project upgrades by patching (docs/reliability.md,
"Upgrades"). The old worker is this repository at the commit before a patch, run from its own
tree; it parks runs at a manager's approval and takes loops halfway (a read, then a slow write,
per turn), and is SIGKILLed in the middle of a write. This code's worker then finishes them.

Checked after: every run completes with the right output; each write happened once (the one
cut by the kill ran again, and finished once); no workflow task failed (a nondeterminism
error is one); each run carries the patch markers of the code it started on, and its reads
kept the old code's shape after the upgrade; the audit chain the two versions wrote is valid.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections import Counter
from collections.abc import Awaitable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle

from chamberlain.agents import GraphSpec
from chamberlain.workflows import ApprovalAnswer, DevServer, GraphWorkflow, Principal, RunResult, decide, start_run
from chamberlain.workflows._graph_workflow import (
    DECIDED_WHERE_ACTED,
    EFFECTS_LEARNED_IN_STEP,
    LOCAL_READS,
    READ_AHEAD,
    READ_WITH_DECISION,
    WRITE_AHEAD,
)
from tests.conftest import run_id
from tests.support import old_version, toolbox
from tests.support.graphs import graph
from tests.support.workers import audit_log, graph_worker, wait_for_approval

pytestmark = [pytest.mark.chaos, pytest.mark.slow]
T = TypeVar("T")

ALICE = Principal(id="alice", roles=["manager"])  # asks for the refunds
MARIA = Principal(id="maria", roles=["manager"])  # approves them after the upgrade
TURNS = 3
NAP = 2.0  # seconds of each write: the kill lands inside the second one

LOOP = GraphSpec.model_validate(
    {
        "name": "upgrade-loop",
        "state": {
            "n": {"type": "int", "default": 0},
            "limit": {"type": "int", "default": TURNS},
            "seconds": {"type": "float", "default": NAP},
            "last": {"type": "str"},
        },
        "start": "bump",
        "max_steps": 50,
        "nodes": {
            "bump": {
                "type": "tool",
                "tool": "test.count",
                "args": {"n": "n"},
                "output": {"n": "result.n"},
                "next": "nap",
            },
            "nap": {
                "type": "tool",
                "tool": "test.slow",
                "args": {"seconds": "seconds", "label": "'nap'"},
                "output": {"last": "result.label"},
                "timeout": "5s",
                "retry": {"max_attempts": 5, "initial_interval": "200ms"},
                "next": "check",
            },
            "check": {"type": "route", "next": [{"when": "n < limit", "to": "bump"}, {"to": "done"}]},
            "done": {"type": "end", "output": ["n", "last"]},
        },
    }
)

# Each old version: the patch whose introduction it precedes, and the markers its runs carry.
OLD_VERSIONS = {
    "before-read-ahead": (READ_AHEAD, {EFFECTS_LEARNED_IN_STEP}),
    "before-effects-learned-in-step": (EFFECTS_LEARNED_IN_STEP, {DECIDED_WHERE_ACTED}),
    "before-decided-where-acted": (DECIDED_WHERE_ACTED, {WRITE_AHEAD}),
    "before-write-ahead": (WRITE_AHEAD, {LOCAL_READS, READ_WITH_DECISION}),
    "before-read-with-decision": (READ_WITH_DECISION, {LOCAL_READS}),
    "before-local-reads": (LOCAL_READS, set()),
}
# What a marker implies: a run carries only its code's newest marker.
IMPLIED = {
    EFFECTS_LEARNED_IN_STEP: {DECIDED_WHERE_ACTED, WRITE_AHEAD, LOCAL_READS, READ_WITH_DECISION},
    DECIDED_WHERE_ACTED: {WRITE_AHEAD, LOCAL_READS, READ_WITH_DECISION},
    WRITE_AHEAD: {LOCAL_READS, READ_WITH_DECISION},
}


@pytest.fixture(scope="module", params=sorted(OLD_VERSIONS))
def old_tree(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The old version's source tree; skipped, saying why, in a shallow clone; a full clone
    without the commit fails here."""
    patch_id, _ = OLD_VERSIONS[request.param]
    try:
        commit = old_version.before_patch(patch_id)
    except old_version.ShallowClone as exc:
        pytest.skip(str(exc))
    except LookupError as exc:
        pytest.fail(str(exc))
    folder = old_version.materialise(commit, tmp_path_factory.mktemp(request.param))
    found = old_version.imported_from(folder)
    assert found and all(path.startswith(str(folder)) for path in found), found
    yield request.param, folder


def history_facts(events: Sequence[HistoryEvent]) -> tuple[set[str], list[str], int]:
    """A run's patch markers, its local activities' types in order, and its failed workflow tasks."""
    patches: set[str] = set()
    local: list[str] = []
    failed = 0
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failed += 1
        if not event.HasField("marker_recorded_event_attributes"):
            continue
        marker = event.marker_recorded_event_attributes
        if marker.marker_name == "core_patch":
            patches.add(json.loads(marker.details["patch-data"].payloads[0].data)["id"])
        elif marker.marker_name == "core_local_activity":
            local.append(json.loads(marker.details["data"].payloads[0].data)["activity_type"])
    return patches, local, failed


async def stuck(client: Client, handles: list[WorkflowHandle[GraphWorkflow, RunResult]]) -> dict[str, list[str]]:
    """Why runs hang after an upgrade: their failed workflow tasks (a nondeterminism error is one)."""
    found: dict[str, list[str]] = {}
    for handle in handles:
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                failure = await client.data_converter.decode_failure(
                    event.workflow_task_failed_event_attributes.failure
                )
                chain: list[str] = []
                cause: BaseException | None = failure
                while cause is not None:
                    chain.append(f"{type(cause).__name__}: {cause}"[:200])
                    cause = cause.__cause__
                found.setdefault(handle.id, []).append(" <- ".join(chain))
    return found


async def within(
    client: Client, step: Awaitable[T], handles: list[WorkflowHandle[GraphWorkflow, RunResult]], seconds: float
) -> T:
    """``step``'s result, or a failure naming the runs' failed workflow tasks if it hangs."""
    try:
        return await asyncio.wait_for(step, seconds)
    except TimeoutError:
        raise AssertionError(f"runs did not go on under the new code: {await stuck(client, handles)}") from None


async def kill_inside_second_nap(worker: subprocess.Popen[str], loops: list[str]) -> None:
    """SIGKILL the old worker once every loop is inside its second write (started, not done):
    with two seconds of write left, the kill cannot fall between a write's end and its report."""
    for _ in range(1500):  # 30 s and more: the old worker's first steps on a loaded machine
        started = Counter(toolbox.effects("start"))
        done = Counter(toolbox.effects("done"))
        inside = [(("start", f"{rid}/nap/2") in started and ("done", f"{rid}/nap/2") not in done) for rid in loops]
        if all(inside):
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the loops never reached their second write together: {toolbox.effects()}")


async def test_runs_started_by_the_old_worker_finish_on_the_new_one(
    old_tree: tuple[str, Path], client: Client, dev_server: DevServer, task_queue: str
) -> None:
    version, folder = old_tree
    _, old_markers = OLD_VERSIONS[version]
    ways = old_markers.union(*(IMPLIED.get(marker, set()) for marker in old_markers))
    old = old_version.spawn_worker(folder, dev_server.address, task_queue)
    try:
        assert old.stdout is not None
        ready = await asyncio.wait_for(asyncio.to_thread(old.stdout.readline), timeout=60)
        assert ready.strip() == "ready", f"the old worker ({version}) did not start: {ready!r}"
        parked: list[WorkflowHandle[GraphWorkflow, RunResult]] = []
        loops: list[WorkflowHandle[GraphWorkflow, RunResult]] = []
        for _ in range(2):
            handle = await start_run(
                client, graph("approval"), {}, run_id=run_id(), principal=ALICE, task_queue=task_queue
            )
            parked.append(handle)
        for _ in range(2):
            loops.append(await start_run(client, LOOP, {}, run_id=run_id(), task_queue=task_queue))
        asks = [await wait_for_approval(handle) for handle in parked]
        await kill_inside_second_nap(old, [handle.id for handle in loops])
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()
    assert toolbox.effects("refund") == []  # nothing past the approvals ran on the old code

    async with graph_worker(client, task_queue):  # the new version, deployed
        for handle, ask in zip(parked, asks, strict=True):
            answer = ApprovalAnswer(step_id=ask.step_id, outcome="approve", approver=MARIA)
            assert await within(client, decide(handle, answer), [handle], 60) == "approve"
        control = await start_run(client, LOOP, {"limit": 1, "seconds": 0.0}, run_id=run_id(), task_queue=task_queue)
        every = [*parked, *loops, control]
        results = await within(client, asyncio.gather(*(h.result() for h in every)), every, 90)

    assert [r.status for r in results] == ["completed"] * 5
    assert [r.output["refund_id"] for r in results[:2]] == ["R-A1", "R-A1"]
    assert [r.output["n"] for r in results[2:4]] == [TURNS, TURNS]
    refunds = Counter(toolbox.effects("refund"))
    assert refunds == {("refund", f"{h.id}/refund/1"): 1 for h in parked}
    for handle in loops:
        started = Counter(s for e, s in toolbox.effects("start") if s.startswith(f"{handle.id}/"))
        finished = Counter(s for e, s in toolbox.effects("done") if s.startswith(f"{handle.id}/"))
        reads = Counter(s for e, s in toolbox.effects("count") if s.startswith(f"{handle.id}/"))
        naps = [f"{handle.id}/nap/{turn}" for turn in range(1, TURNS + 1)]
        assert finished == dict.fromkeys(naps, 1)  # every write finished once
        assert started == {**dict.fromkeys(naps, 1), naps[1]: 2}  # the one cut by the kill ran again
        assert reads == {f"{handle.id}/bump/{turn}": 1 for turn in range(1, TURNS + 1)}

    for handle in [*parked, *loops]:
        patches, local, failed = history_facts((await handle.fetch_history()).events)
        assert failed == 0, f"{handle.id}: a workflow task failed on replay"
        assert patches == old_markers, handle.id  # it started on the old code, and stays on its path
        assert ("chamberlain.audit_seal" in local) == (WRITE_AHEAD in ways), handle.id  # records as it kept them
        # It learnt which tools write as its code did: in a local activity of its own, or not at all.
        learnt_apart = DECIDED_WHERE_ACTED in ways and EFFECTS_LEARNED_IN_STEP not in ways
        assert ("chamberlain.tool_effects" in local) == learnt_apart, handle.id
        if READ_WITH_DECISION not in ways:
            assert "chamberlain.gate_read" not in local, handle.id  # reads kept the old shape after the upgrade
    for handle in loops:  # each turn a read and a write: how the old code ran them, it still does
        _, local, _ = history_facts((await handle.fetch_history()).events)
        if DECIDED_WHERE_ACTED in ways:  # a read and its decision per turn; a write decided where it acts
            assert local.count("chamberlain.gate_read") == TURNS, (handle.id, local)
        elif READ_WITH_DECISION in ways:  # a read and its decision, and a write's decision, per turn
            assert local.count("chamberlain.gate_read") == 2 * TURNS, (handle.id, local)
        else:
            reads_as_local = local.count("chamberlain.tool_step")
            assert reads_as_local == (TURNS if LOCAL_READS in ways else 0), (handle.id, local)
    patches, local, failed = history_facts((await control.fetch_history()).events)
    assert (patches, failed) == ({READ_AHEAD}, 0)  # the newest marker implies those before it
    assert {"chamberlain.read_ahead", "chamberlain.audit_seal"} <= set(local)  # the new path
    assert "chamberlain.tool_effects" not in local  # the first step's read told which tools write
    assert local.count("chamberlain.read_ahead") == 1  # the read; the write decided in its own activity
    assert "chamberlain.gate_read" not in local
    assert "chamberlain.record_usage" not in local  # model usage is recorded where the model is called
    assert audit_log().verify() is None
