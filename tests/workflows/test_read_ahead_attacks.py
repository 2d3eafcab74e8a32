"""Attacks on read-ahead: every graph here runs twice — reads going ahead in one local activity,
and (``RunRequest(read_ahead=False)``) each step on its own — and both runs must end alike, take
the same steps and leave the same audit records and the same reads: another customer's record
reached through a route inside a read-ahead, labelled data flowing into a later read, a grant,
loops against the step limits and segments, a tool's error under ``on_error`` or without it,
child runs and maps."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from chamberlain.agents import GraphSpec
from chamberlain.tools import Resource, ToolContext, ToolRegistry, ToolRejected, ToolUnavailable, tool
from chamberlain.workflows import (
    ApprovalAnswer,
    AuditLog,
    Gate,
    GraphWorkflow,
    PolicyEngine,
    Principal,
    RunRequest,
    create_worker,
    decide,
    progress,
)
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.workers import TEST_SECRET
from tests.workflows.test_graph_workflow import local_activities

# -- tools of these tests: reads that record each call in the test's ledger ----------------------


class Key(BaseModel):
    key: str


class Found(BaseModel):
    key: str
    owner: str
    next: str


class Balance(BaseModel):
    balance: str
    memo: str


class Hits(BaseModel):
    key: str
    hits: int


# A chain of records: K1 and K2 are customer c1's, K3 and K4 customer c2's.
RECORDS = {"K1": ("c1", "K2"), "K2": ("c1", "K3"), "K3": ("c2", "K4"), "K4": ("c2", "END")}
ACCOUNT = "ACCT-7731-0042-9918"  # a finance value: only ``balance`` is labelled, ``memo`` copies it


def owned(args: Key) -> Resource:
    owner = RECORDS.get(args.key, ("nobody", ""))[0]
    return Resource("Order", args.key, {"owner": owner})


@tool("atk.record", action="atk.record.read", resource=owned)
async def read_record(args: Key, ctx: ToolContext) -> Found:
    """A customer's record, and the key of the next one."""
    toolbox.record(f"record:{args.key}", ctx.step_id)
    owner, after = RECORDS[args.key]
    return Found(key=args.key, owner=owner, next=after)


@tool("atk.ledger", action="atk.ledger.read", labels={"balance": ("finance",)})
async def read_ledger(args: Key, ctx: ToolContext) -> Balance:
    """An account's balance (finance data), with a memo that quotes it."""
    toolbox.record("ledger", ctx.step_id)
    return Balance(balance=ACCOUNT, memo=f"account {ACCOUNT}")


@tool("atk.lookup", action="atk.lookup.read")
async def lookup(args: Key, ctx: ToolContext) -> Hits:
    """Look a key up somewhere that must never see finance data."""
    toolbox.record(f"lookup:{args.key}", ctx.step_id)
    return Hits(key=args.key, hits=len(args.key))


@tool("atk.refuse", action="atk.refuse.read")
async def refuse(args: Key, ctx: ToolContext) -> Hits:
    """A read the backend refuses (a business rule): the refusal comes back as data."""
    toolbox.record("refuse", ctx.step_id)
    raise ToolRejected(f"no record {args.key}")


@tool("atk.flaky", action="atk.lookup.read")
async def flaky_read(args: Key, ctx: ToolContext) -> Hits:
    """A read whose backend is down the first time a step asks (an exception: Temporal retries)."""
    first = ("flaky", ctx.step_id) not in toolbox.effects("flaky")
    toolbox.record("flaky", ctx.step_id)
    if first:
        raise ToolUnavailable("the backend is down, once")
    return Hits(key=args.key, hits=1)


def tools() -> ToolRegistry:
    base = toolbox.tools()
    return ToolRegistry([*(base[name] for name in base), read_record, read_ledger, lookup, refuse, flaky_read])


EVERYTHING = '@id("everything") permit (principal, action, resource);'
OWN_RECORDS_ONLY = (
    EVERYTHING
    + """
@id("customers-only-their-own-records")
forbid (principal, action, resource)
when { principal has customer && resource is Order }
unless { resource has owner && resource.owner == principal.customer };
"""
)
NO_FINANCE_LOOKUPS = (
    EVERYTHING
    + """
@id("no-finance-lookups")
forbid (principal, action == Action::"atk.lookup.read", resource)
when { context.labels.contains("finance") };
"""
)

APPROVED_RECORD_READS = """
@id("everything-else") permit (principal, action, resource) unless { action == Action::"atk.record.read" };
@id("record-reads-approved") @approvers("manager")
permit (principal, action == Action::"atk.record.read", resource)
when { context.approved && context.approver_roles.contains("manager") };
"""

ALICE = Principal(id="alice", roles=["support"])
MARIA = Principal(id="maria", roles=["manager"])
C1 = Principal(id="webhook:c1", kind="service", roles=["customer"], customer="c1")
FINANCE = Principal(id="fin", roles=["finance"], department="finance")


# -- running a graph both ways ---------------------------------------------------------------------


@dataclass
class Ran:
    """A run as a test compares it: run IDs cut off every step ID."""

    rid: str
    output: dict[str, Any] | None
    end: str | None
    steps: int | None
    segments: int | None
    failure: tuple[str | None, str] | None
    step_ids: list[str]
    records: list[tuple[str, str, str]]
    reads: Counter[tuple[str, str]]
    local: list[str]
    asked: list[str]


async def approve(handle: Any, approvals: int) -> list[str]:
    """Approve, as a manager, each approval the run asks for, up to ``approvals``; the steps asked."""
    asked: list[str] = []
    for _ in range(400):
        if len(asked) == approvals:
            break
        pending = (await progress(handle)).pending_approval
        if pending is not None and pending.step_id not in asked:
            asked.append(pending.step_id)
            await decide(handle, ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=MARIA))
        await asyncio.sleep(0.05)
    return asked


async def every_segments_local_activities(client: Client, rid: str, run: str | None) -> list[str]:
    """The local activities of a run's every segment, following continue-as-new."""
    found: list[str] = []
    while run:
        history = await client.get_workflow_handle(rid, run_id=run).fetch_history()
        found += local_activities(history)
        last = history.events[-1]
        continued = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        run = continued if last.HasField("workflow_execution_continued_as_new_event_attributes") else None
    return found


def _cut(rid: str, step_id: str) -> str:
    return step_id.removeprefix(f"{rid}/")


async def run_both(
    client: Client,
    task_queue: str,
    tmp_path: Path,
    spec: GraphSpec,
    *,
    policy: str = EVERYTHING,
    principal: Principal | None = None,
    values: dict[str, Any] | None = None,
    steps_per_segment: int = 500,
    approvals: int = 0,
) -> tuple[Ran, Ran]:
    """The graph run with reads going ahead, then with each step on its own, by one worker."""
    registry = tools()
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    gate = Gate(PolicyEngine([policy]), audit, registry, TEST_SECRET)
    ran: list[Ran] = []
    async with create_worker(client, models=toolbox.models(), tools=registry, task_queue=task_queue, gate=gate):
        for read_ahead in (True, False):
            rid = run_id()
            request = RunRequest(
                graph=spec,
                input=values or {},
                principal=principal,
                steps_per_segment=steps_per_segment,
                read_ahead=read_ahead,
            )
            handle = await client.start_workflow(GraphWorkflow.run, request, id=rid, task_queue=task_queue)
            asked = await approve(handle, approvals)
            output = end = steps = segments = failure = None
            try:
                result = await handle.result()
                output, end, steps, segments = result.output, result.end, result.steps, result.segments
            except WorkflowFailureError as exc:
                cause = exc.cause
                failure = (cause.type if isinstance(cause, ApplicationError) else None, str(cause))
                failure = (failure[0], failure[1].replace(rid, "<run>"))
            step_ids = [_cut(rid, s.step_id) for s in (await progress(handle)).steps]
            local = await every_segments_local_activities(client, rid, handle.first_execution_run_id)
            await gate.drain()
            records = [(_cut(rid, r.step_id), r.kind, r.decision) for r in audit.records() if r.run_id.startswith(rid)]
            reads = Counter((event, _cut(rid, step)) for event, step in toolbox.effects() if step.startswith(rid))
            asked = [_cut(rid, step) for step in asked]
            ran.append(Ran(rid, output, end, steps, segments, failure, step_ids, records, reads, local, asked))
    ahead, alone = ran
    assert "chamberlain.read_ahead" in ahead.local, "the read-ahead run never went ahead: the attack is vacuous"
    assert "chamberlain.read_ahead" not in alone.local
    return ahead, alone


def assert_alike(ahead: Ran, alone: Ran) -> None:
    assert (ahead.output, ahead.end, ahead.steps, ahead.segments) == (
        alone.output,
        alone.end,
        alone.steps,
        alone.segments,
    )
    assert ahead.failure == alone.failure
    assert ahead.step_ids == alone.step_ids
    assert ahead.records == alone.records
    assert ahead.reads == alone.reads
    assert ahead.asked == alone.asked


def graph(name: str, nodes: dict[str, Any], state: dict[str, Any], start: str, **spec: Any) -> GraphSpec:
    return GraphSpec.model_validate({"name": name, "state": state, "start": start, "nodes": nodes, **spec})


# -- the attacks -----------------------------------------------------------------------------------


async def test_a_route_inside_a_read_ahead_does_not_carry_a_customer_into_another_customers_record(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """c1's channel walks a chain of records, each naming the next (read → route → the same
    read): the third is c2's. The walk and the route that loops it go ahead in the worker, on
    the key read one step before; the third read is refused there, once, and never read."""
    spec = graph(
        "walk",
        {
            "walk": {
                "type": "tool",
                "tool": "atk.record",
                "args": {"key": "cur"},
                "output": {"rec": "result", "cur": "result.next"},
                "next": "hop",
                "on_error": "refused",
                "error": "why",
            },
            "hop": {"type": "route", "next": [{"when": "cur != 'END'", "to": "walk"}, {"to": "done"}]},
            "done": {"type": "end"},
            "refused": {"type": "end"},
        },
        {"cur": {"default": "K1"}, "rec": {"type": "dict"}, "why": {}},
        "walk",
        max_steps=20,
    )
    ahead, alone = await run_both(client, task_queue, tmp_path, spec, policy=OWN_RECORDS_ONLY, principal=C1)
    assert_alike(ahead, alone)
    assert ahead.end == "refused" and "customers-only-their-own-records" in str(ahead.output)
    assert ahead.step_ids == ["walk/1", "hop/1", "walk/2", "hop/2", "walk/3", "refused/1"]
    assert ahead.records == [
        ("walk/1", "effect", "allow"),
        ("walk/2", "effect", "allow"),
        ("walk/3", "decision", "deny"),
    ]
    assert ahead.reads == {("record:K1", "walk/1"): 1, ("record:K2", "walk/2"): 1}  # K3 never read
    assert ahead.local.count("chamberlain.read_ahead") == 1


async def test_finance_data_read_ahead_reaches_a_later_reads_decision_by_field_and_by_value(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """The ledger's balance is finance data; its memo, a field with no label, quotes it. A lookup
    of the balance (by field) and one of the memo (by value) are refused inside the read-ahead;
    a lookup of the memo after a write — taken by the run from the labels the read-ahead handed
    back — is refused too. Only the public lookup is read."""
    lookup_of = {
        "by_field": "balance",
        "by_value": "memo",
        "public": "'public'",
    }
    nodes: dict[str, Any] = {
        "ledger": {
            "type": "tool",
            "tool": "atk.ledger",
            "args": {"key": "'acct'"},
            "output": {"balance": "result.balance", "memo": "result.memo"},
            "next": "by_field",
        }
    }
    order = [*lookup_of, "write", "after"]
    for name, after in zip(lookup_of, order[1:4], strict=True):
        nodes[name] = {
            "type": "tool",
            "tool": "atk.lookup",
            "args": {"key": lookup_of[name]},
            "output": {name: "result.hits"},
            "next": after,
            "on_error": after,
            "error": f"{name}_why",
        }
    nodes["write"] = {"type": "tool", "tool": "test.slow", "args": {"seconds": "0"}, "next": "after"}
    nodes["after"] = {
        "type": "tool",
        "tool": "atk.lookup",
        "args": {"key": "memo"},
        "output": {"after": "result.hits"},
        "next": "done",
        "on_error": "done",
        "error": "after_why",
    }
    nodes["done"] = {"type": "end"}
    state = {"balance": {}, "memo": {}} | {f: {} for n in [*lookup_of, "after"] for f in (n, f"{n}_why")}
    spec = graph("labels", nodes, state, "ledger")
    ahead, alone = await run_both(client, task_queue, tmp_path, spec, policy=NO_FINANCE_LOOKUPS, principal=FINANCE)
    assert_alike(ahead, alone)
    decisions = {step: (kind, decision) for step, kind, decision in ahead.records}
    assert decisions["by_field/1"] == ("decision", "deny")
    assert decisions["by_value/1"] == ("decision", "deny")
    assert decisions["after/1"] == ("decision", "deny")
    assert decisions["public/1"] == ("effect", "allow")
    assert [event for event, _ in ahead.reads if event.startswith("lookup:")] == ["lookup:public"]
    assert ahead.output is not None and ahead.output["public"] == len("public")


async def test_a_grant_that_leaves_out_the_second_read_refuses_it_inside_the_read_ahead_once(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    nodes = {
        "one": {"type": "tool", "tool": "atk.lookup", "args": {"key": "'a'"}, "output": {"one": "result.hits"}},
        "two": {"type": "tool", "tool": "atk.record", "args": {"key": "'K1'"}, "output": {"two": "result"}},
        "three": {"type": "tool", "tool": "atk.lookup", "args": {"key": "'ccc'"}, "output": {"three": "result.hits"}},
    }
    for name, after in (("one", "two"), ("two", "three"), ("three", "done")):
        nodes[name] |= {"next": after, "on_error": "refused", "error": "why"}
    spec = graph(
        "granted",
        {**nodes, "done": {"type": "end"}, "refused": {"type": "end"}},
        {"one": {"type": "int"}, "two": {"type": "dict"}, "three": {"type": "int"}, "why": {}},
        "one",
        grant=["atk.lookup.read"],
    )
    ahead, alone = await run_both(client, task_queue, tmp_path, spec)
    assert_alike(ahead, alone)
    assert ahead.end == "refused" and "not in the agent's grant" in str(ahead.output)
    assert ahead.records == [("one/1", "effect", "allow"), ("two/1", "decision", "deny")]
    assert ahead.reads == {("lookup:a", "one/1"): 1}


def count_loop(until: int, **spec: Any) -> GraphSpec:
    """read → route → the same read, until ``n`` reaches ``until``."""
    return graph(
        "loop",
        {
            "c": {"type": "tool", "tool": "test.count", "args": {"n": "n"}, "output": {"n": "result.n"}, "next": "r"},
            "r": {"type": "route", "next": [{"when": f"n < {until}", "to": "c"}, {"to": "done"}]},
            "done": {"type": "end"},
        },
        {"n": {"type": "int", "default": 0}},
        "c",
        **spec,
    )


async def test_a_loop_of_reads_hits_max_steps_inside_a_read_ahead_as_it_does_alone(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ahead, alone = await run_both(client, task_queue, tmp_path, count_loop(100, max_steps=7))
    assert_alike(ahead, alone)
    assert ahead.failure is not None and ahead.failure[0] == "StepLimitExceeded"
    assert "max_steps=7 at node 'r'" in ahead.failure[1]
    assert ahead.step_ids == ["c/1", "r/1", "c/2", "r/2", "c/3", "r/3", "c/4"]
    assert ahead.reads == {("count", f"c/{i}"): 1 for i in range(1, 5)}


async def test_a_loop_of_reads_across_segments_takes_the_same_steps(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ahead, alone = await run_both(client, task_queue, tmp_path, count_loop(5, max_steps=50), steps_per_segment=3)
    assert_alike(ahead, alone)
    assert ahead.output == {"n": 5} and ahead.steps == 11 and ahead.segments == 4
    assert ahead.records == [(f"c/{i}", "effect", "allow") for i in range(1, 6)]


def reads_with_errors(second: dict[str, Any]) -> GraphSpec:
    """count → ``second`` → count → end; ``second`` may go to ``recover`` (a count) on error."""
    nodes: dict[str, Any] = {
        "one": {"type": "tool", "tool": "test.count", "args": {"n": "1"}, "output": {"n": "result.n"}, "next": "bad"},
        "bad": {"type": "tool", "output": {}, "next": "two"} | second,
        "recover": {"type": "tool", "tool": "test.count", "args": {"n": "100"}, "output": {"n": "result.n"}},
        "two": {"type": "tool", "tool": "test.count", "args": {"n": "n"}, "output": {"n": "result.n"}, "next": "done"},
        "done": {"type": "end"},
    }
    nodes["recover"]["next"] = "two"
    if "on_error" not in second:
        del nodes["recover"]
    return graph("errors", nodes, {"n": {"type": "int", "default": 0}, "why": {}}, "one")


async def test_a_read_with_arguments_its_tool_rejects_goes_down_on_error_inside_the_read_ahead(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    bad = {"tool": "test.count", "args": {"n": "'not a number'"}, "on_error": "recover", "error": "why"}
    ahead, alone = await run_both(client, task_queue, tmp_path, reads_with_errors(bad))
    assert_alike(ahead, alone)
    assert ahead.output is not None and ahead.output["n"] == 102 and "ToolInputInvalid" not in ahead.output["why"]
    assert "test.count" in ahead.output["why"] and ahead.step_ids == ["one/1", "bad/1", "recover/1", "two/1", "done/1"]
    assert ahead.records == [
        ("one/1", "effect", "allow"),
        ("bad/1", "decision", "allow"),  # allowed, not acted: the tool refused its arguments
        ("recover/1", "effect", "allow"),
        ("two/1", "effect", "allow"),
    ]


async def test_a_read_the_backend_refuses_without_on_error_fails_the_run_after_one_read(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    bad = {"tool": "atk.refuse", "args": {"key": "'K9'"}}
    ahead, alone = await run_both(client, task_queue, tmp_path, reads_with_errors(bad))
    assert ahead.failure == alone.failure and ahead.failure is not None and ahead.failure[0] == "ToolRejected"
    assert ahead.records == alone.records == [("one/1", "effect", "allow"), ("bad/1", "decision", "allow")]
    assert alone.reads[("refuse", "bad/1")] == 1
    assert ahead.reads == alone.reads


def three_counts(name: str) -> GraphSpec:
    nodes: dict[str, Any] = {
        f"c{i}": {
            "type": "tool",
            "tool": "test.count",
            "args": {"n": "n"},
            "output": {"n": "result.n"},
            "next": f"c{i + 1}" if i < 2 else "done",
        }
        for i in range(3)
    }
    return graph(name, {**nodes, "done": {"type": "end"}}, {"n": {"type": "int", "default": 0}}, "c0")


def with_children() -> GraphSpec:
    nodes = {
        "p1": {"type": "tool", "tool": "test.count", "args": {"n": "n"}, "output": {"n": "result.n"}, "next": "p2"},
        "p2": {"type": "tool", "tool": "test.count", "args": {"n": "n"}, "output": {"n": "result.n"}, "next": "sub"},
        "sub": {"type": "subgraph", "graph": "counts", "input": {"n": "n"}, "output": {"n": "result.n"}, "next": "m"},
        "m": {
            "type": "map",
            "over": "items",
            "graph": "counts",
            "input": {"n": "item"},
            "write": "mapped",
            "next": "p3",
        },
        "p3": {"type": "tool", "tool": "test.count", "args": {"n": "n"}, "output": {"n": "result.n"}, "next": "p4"},
        "p4": {"type": "tool", "tool": "test.count", "args": {"n": "n"}, "output": {"n": "result.n"}, "next": "done"},
        "done": {"type": "end"},
    }
    state = {
        "n": {"type": "int", "default": 0},
        "items": {"type": "list", "default": [10, 20]},
        "mapped": {"type": "list"},
    }
    return graph("parent", nodes, state, "p1", graphs={"counts": three_counts("counts")})


async def test_child_runs_and_map_items_read_ahead_and_end_as_they_do_alone(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ahead, alone = await run_both(client, task_queue, tmp_path, with_children())
    assert (ahead.output, ahead.end, ahead.steps, ahead.failure) == (
        alone.output,
        alone.end,
        alone.steps,
        alone.failure,
    )
    assert ahead.step_ids == alone.step_ids == ["p1/1", "p2/1", "sub/1", "m/1", "p3/1", "p4/1", "done/1"]
    assert ahead.output is not None and ahead.output["n"] == 7
    assert [item["output"]["n"] for item in ahead.output["mapped"]] == [13, 23]
    # Child runs' records and reads: in whatever order the map's items went, the same ones.
    assert Counter(ahead.records) == Counter(alone.records)
    assert ahead.reads == alone.reads
    assert len(ahead.records) == 4 + 3 * 3 and set(ahead.reads.values()) == {1}
    child = local_activities(await client.get_workflow_handle(f"{ahead.rid}/sub/1").fetch_history())
    assert "chamberlain.read_ahead" in child


async def test_a_run_without_read_ahead_has_children_without_it(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    _, alone = await run_both(client, task_queue, tmp_path, with_children())
    for child in (f"{alone.rid}/sub/1", f"{alone.rid}/m/1/1", f"{alone.rid}/m/1/2"):
        local = local_activities(await client.get_workflow_handle(child).fetch_history())
        assert "chamberlain.read_ahead" not in local, child


async def test_a_graphs_approval_stands_for_the_first_read_needing_one_and_only_the_first(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """approval → lookup → record → lookup → record: the approval node's answer lets the first
    record read through (the read-ahead stopped there); the second needs a person again."""
    chain = [("a", "atk.lookup", "'aa'"), ("b", "atk.record", "'K1'"), ("c", "atk.lookup", "'cc'")]
    chain.append(("d", "atk.record", "'K2'"))
    nodes: dict[str, Any] = {"ok": {"type": "approval", "ask": "Look these up?", "approvers": ["manager"], "next": "a"}}
    for (name, tool_name, key), after in zip(chain, ["b", "c", "d", "done"], strict=True):
        nodes[name] = {"type": "tool", "tool": tool_name, "args": {"key": key}, "output": {name: "result"}}
        nodes[name] |= {"next": after, "on_error": "refused", "error": "why"}
    nodes |= {"done": {"type": "end"}, "refused": {"type": "end"}}
    state = {name: {"type": "dict"} for name, _, _ in chain} | {"why": {}}
    spec = graph("standing", nodes, state, "ok")
    ahead, alone = await run_both(
        client, task_queue, tmp_path, spec, policy=APPROVED_RECORD_READS, principal=ALICE, approvals=2
    )
    assert_alike(ahead, alone)
    assert ahead.end == "done" and ahead.asked == ["ok/1", "d/1"]
    assert [r for r in ahead.records if r[0] in ("b/1", "d/1")] == [
        ("b/1", "decision", "needs_approval"),
        ("b/1", "effect", "allow"),
        ("d/1", "decision", "needs_approval"),
        ("d/1", "approval", "approve"),
        ("d/1", "effect", "allow"),
    ]


async def test_a_read_allowed_one_attempt_gets_one_inside_a_read_ahead(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    flaky = {"tool": "atk.flaky", "args": {"key": "'k'"}, "retry": {"max_attempts": 1}}
    ahead, alone = await run_both(client, task_queue, tmp_path, reads_with_errors(flaky))
    assert alone.failure is not None and "the backend is down, once" in alone.failure[1]
    assert alone.reads[("flaky", "bad/1")] == 1
    assert_alike(ahead, alone)
