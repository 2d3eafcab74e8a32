"""The ``chamberlain`` command: validate and run graphs, start and follow durable runs, run
workers, the embedded stack and the HTTP server.

Every known error reaches the user as one line naming the file, field or flag and a fix
(:mod:`chamberlain.server._errors`); ``--debug`` shows the traceback. Paths and settings come
from one :class:`ServerSettings`; a relative file not found in the working directory is looked
up in the installed package, so the examples' commands work from any directory.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import signal
import sys
import uuid
import warnings
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
import yaml
from rich.console import Console
from rich.table import Table
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

import chamberlain
from chamberlain.agents._embedded import EMBEDDED_MODEL, EmbeddedModelServer
from chamberlain.agents._exceptions import AgentError, GraphSpecError, GraphWarning
from chamberlain.agents._loader import load_graph
from chamberlain.agents._spec import GraphSpec
from chamberlain.agents._state import initial_state
from chamberlain.server._app import App, AppError, load_app
from chamberlain.server._errors import CliError, explain, reading
from chamberlain.server._http import BackgroundServer, create_app
from chamberlain.server._runs import STATUSES, RunNotFound, list_runs, show_run
from chamberlain.server._settings import ServerSettings
from chamberlain.server._temporal import TemporalUnavailable, reach
from chamberlain.workflows._audit import AuditLogError
from chamberlain.workflows._devserver import DevServer
from chamberlain.workflows._run_index import RunIndex
from chamberlain.workflows._types import Principal
from chamberlain.workflows._usage import UsageLedger
from chamberlain.workflows._worker import TASK_QUEUE, create_worker

app = typer.Typer(
    help="Chamberlain: durable, permission-checked agent workflows on your private model.",
    pretty_exceptions_show_locals=False,
)
graph_app = typer.Typer(help="Validate, inspect and run agent graphs.")
run_app = typer.Typer(help="Start, list, show and cancel durable runs on a Temporal service.")
webhook_app = typer.Typer(help="Sign and send webhooks, for demos and debugging.")
audit_app = typer.Typer(help="Verify and export the tamper-evident audit log.")
app.add_typer(graph_app, name="graph")
app.add_typer(run_app, name="run")
app.add_typer(webhook_app, name="webhook")
app.add_typer(audit_app, name="audit")

console = Console()
errors = Console(stderr=True)
PACKAGE = Path(chamberlain.__file__).parent
DOCS_SCHEMA = PACKAGE.resolve().parent / "docs" / "graph.schema.json"  # a source checkout's copy

AppOption = Annotated[str | None, typer.Option("--app", help="module offering tools() and models()")]
AuditOption = Annotated[
    str | None, typer.Option("--db", envvar="CHAMBERLAIN_AUDIT", help="audit log database URL \\[default: in data]")
]
AddressOption = Annotated[str, typer.Option("--address", envvar="TEMPORAL_ADDRESS", help="the Temporal service")]
NamespaceOption = Annotated[str, typer.Option("--namespace", envvar="TEMPORAL_NAMESPACE")]
SourcesOption = Annotated[Path, typer.Option("--sources", envvar="CHAMBERLAIN_WEBHOOKS", help="webhook sources YAML")]
UrlOption = Annotated[str, typer.Option("--url", envvar="CHAMBERLAIN_PUBLIC_URL", help="the Chamberlain HTTP server")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
T = TypeVar("T")


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="show an error's traceback (anywhere in the line)")] = False,
) -> None:
    """Chamberlain: durable, permission-checked agent workflows on your private model."""


def settings() -> ServerSettings:
    return ServerSettings()


def existing(path: Path, what: str = "file") -> Path:
    """``path`` as given, or — relative and absent here — the same path inside the installed
    package (``examples/quickstart/graph.yaml`` works from any directory)."""
    if path.exists() or path.is_absolute():
        if not path.exists():
            raise CliError(f"{path}: no such {what} — check the path")
        return path
    shipped = PACKAGE / path
    if shipped.exists():
        return shipped
    raise CliError(f"{path}: no such {what} in {Path.cwd()} (nor in the installed package) — check the path")


def _app(name: str | None) -> App:
    with warnings.catch_warnings():
        return load_app(name)


# -- graphs --------------------------------------------------------------------------------------


def _load(path: Path, app: App | None) -> GraphSpec:
    """Load a graph; with an app's tools and models, also run the static safety checks."""
    path = existing(path, "graph file")
    with warnings.catch_warnings(record=True) as caught, reading(path, "graph file"):
        warnings.simplefilter("always", GraphWarning)
        try:
            spec = load_graph(path, tools=app.tools if app else None, review=app.review if app else None)
        except GraphSpecError as exc:
            for issue in exc.issues:
                errors.print(f"[red]error[/red] {issue}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from exc
    for warning in caught:
        errors.print(f"[yellow]warning[/yellow] {warning.message}", highlight=False, soft_wrap=True)
    return spec


@graph_app.command("validate")
def graph_validate(files: list[Path], app_name: AppOption = None) -> None:
    """Check graph files; print every problem with its file and line, exit 1 if any."""
    loaded = _app(app_name)
    failed = False
    for path in files:
        try:
            spec = _load(path, loaded)
            console.print(f"[green]ok[/green] {path}: graph '{spec.name}', {len(spec.nodes)} nodes")
        except typer.Exit:
            failed = True
        except CliError as exc:
            errors.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
            failed = True
    if failed:
        raise typer.Exit(1)


@graph_app.command("schema")
def graph_schema(
    write: Annotated[bool, typer.Option("--write", help="regenerate the committed schema files")] = False,
) -> None:
    """Print the JSON schema of graph files (an editor's ``$schema``); --write regenerates the
    packaged copy (and, in a source checkout, docs/graph.schema.json)."""
    from chamberlain.agents._schema import graph_schema_text, write_graph_schema

    if not write:
        print(graph_schema_text(), end="")
        return
    copies = [DOCS_SCHEMA] if DOCS_SCHEMA.parent.is_dir() else []
    changed = write_graph_schema(*copies)
    console.print(f"wrote {', '.join(map(str, changed))}" if changed else "the schema files are up to date")


@graph_app.command("export")
def graph_export(target: Annotated[str, typer.Argument(help="MODULE:ATTR naming a GraphSpec built in Python")]) -> None:
    """Print a graph built in Python as YAML (a graph file that loads back to the same graph)."""
    import importlib

    from chamberlain.agents import _loader as loader

    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise CliError(f"{target!r}: name the graph as MODULE:ATTR, e.g. mypkg.graphs:support")
    from chamberlain.agents import Graph

    value = getattr(importlib.import_module(module_name), attr, None)
    if callable(value) and not isinstance(value, GraphSpec | Graph):
        try:
            value = value()
        except TypeError as exc:
            raise CliError(f"{target}: calling it without arguments failed ({exc}) — name a graph") from exc
    if isinstance(value, Graph):
        value = value.build()
    if not isinstance(value, GraphSpec):
        raise CliError(f"{target}: is {type(value).__name__}, not a GraphSpec or Graph (or a function returning one)")
    dump: Callable[[GraphSpec], str] | None = getattr(loader, "dump_graph", None)
    if dump is None:
        raise CliError("this version of chamberlain cannot write graphs as YAML yet")
    print(dump(value), end="")


def _json_arg(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        example = f'{flag} \'{{"message": "hi"}}\''
        raise CliError(f"{flag}: invalid JSON at column {exc.colno}: {exc.msg} — e.g. {example}") from exc
    if not isinstance(value, dict):
        raise CliError(f'{flag}: must be a JSON object, e.g. {flag} \'{{"message": "hi"}}\'')
    return value


@graph_app.command("run")
def graph_run(
    file: Path,
    input: Annotated[str, typer.Option("--input", help="initial state as JSON")] = "{}",
    approve: Annotated[bool, typer.Option(help="answer approval steps with approve")] = False,
    who: Annotated[str | None, typer.Option("--as", help="the principal the run acts for \\[default: you]")] = None,
    role: Annotated[list[str] | None, typer.Option("--role", help="a role of the principal (repeat)")] = None,
    app_name: AppOption = None,
) -> None:
    """Run a graph once in this process with LangGraph (no durability), for quick iteration —
    behind the same permission gate as a worker (the development gate, audited in the data folder)."""
    from chamberlain.agents._steps import ApprovalAnswer, ApprovalRequest
    from chamberlain.workflows._local import run_gated_in_process

    values = _json_arg(input, "--input")
    loaded = _app(app_name)
    spec = _load(file, loaded)
    initial_state(spec, values)  # a wrong --input is refused before anything starts
    principal = _principal(who, role or [], None, None)
    gate = loaded.development_gate(settings().ensure_data())

    def decide(request: ApprovalRequest) -> ApprovalAnswer:
        outcome = "approve" if approve else "reject"
        console.print(f"[yellow]approval[/yellow] {request.ask} → {outcome}")
        person = Principal(id="cli-approver", roles=list(request.approvers))
        return ApprovalAnswer(step_id=request.step.step_id, outcome=outcome, approver=person)

    trace: list[Any] = []
    run = run_gated_in_process(
        spec, values, gate=gate, models=loaded.models, principal=principal, approve=decide, trace=trace
    )
    result = asyncio.run(run)
    table = Table("step", "node", "updates", "next")
    for i, step in enumerate(trace, 1):
        table.add_row(str(i), step.node, json.dumps(step.updates, ensure_ascii=False)[:80], step.next or "—")
    console.print(table)
    console.print_json(result.model_dump_json())


# -- durable runs ----------------------------------------------------------------------------------


def _with_client(address: str, namespace: str, work: Callable[[Client], Awaitable[T]]) -> T:
    async def go() -> T:
        return await work(await reach(address, namespace))

    return asyncio.run(go())


def _principal(who: str | None, roles: list[str], department: str | None, tenant: str | None) -> Principal:
    return Principal(id=who or getpass.getuser(), roles=roles, department=department, tenant=tenant)


@run_app.command("start")
def run_start(
    file: Path,
    input: Annotated[str, typer.Option("--input", help="initial state as JSON")] = "{}",
    who: Annotated[str | None, typer.Option("--as", help="the principal the run acts for \\[default: you]")] = None,
    role: Annotated[list[str] | None, typer.Option("--role", help="a role of the principal (repeat)")] = None,
    department: Annotated[str | None, typer.Option(help="the principal's department")] = None,
    tenant: Annotated[str | None, typer.Option(help="the principal's tenant")] = None,
    run_id: Annotated[str | None, typer.Option("--id", help="the run's ID \\[default: graph name + random]")] = None,
    task_queue: Annotated[str, typer.Option(envvar="CHAMBERLAIN_TASK_QUEUE")] = TASK_QUEUE,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the result")] = False,
    address: AddressOption = "127.0.0.1:7233",
    namespace: NamespaceOption = "default",
    app_name: AppOption = None,
) -> None:
    """Start a durable run of a graph (checked against the app's tools first); print its ID."""
    from chamberlain.workflows._runs import start_run

    values = _json_arg(input, "--input")
    spec = _load(file, _app(app_name))
    initial_state(spec, values)  # a wrong --input is refused here, not by the run in a worker
    principal = _principal(who, role or [], department, tenant)
    run = run_id or f"{spec.name}-{uuid.uuid4().hex[:8]}"

    async def start(client: Client) -> None:
        try:
            handle = await start_run(client, spec, values, run_id=run, principal=principal, task_queue=task_queue)
        except WorkflowAlreadyStartedError as exc:
            raise CliError(f"run {run} exists already — chamberlain run show {run}, or give another --id") from exc
        console.print(f"started [bold]{handle.id}[/bold] as {principal.id} — chamberlain run show {handle.id}")
        if wait:
            view = await _wait(client, handle.id, principal)
            console.print(f"{view.status}: {json.dumps(view.output, ensure_ascii=False)}")

    _with_client(address, namespace, start)


async def _wait(client: Client, run_id: str, viewer: Principal) -> Any:
    from temporalio.client import WorkflowFailureError

    try:
        await client.get_workflow_handle(run_id).result()
    except WorkflowFailureError as exc:
        raise CliError(f"run {run_id} failed: {exc.cause} — chamberlain run show {run_id}") from exc
    return await show_run(client, run_id, viewer)


@run_app.command("list")
def run_list(
    status: Annotated[str | None, typer.Option(help=f"only runs with this status: {', '.join(STATUSES)}")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOption = False,
    address: AddressOption = "127.0.0.1:7233",
    namespace: NamespaceOption = "default",
) -> None:
    """List graph runs, newest first, from Temporal's visibility store, with the graph (and its
    version: declared + content hash) each started with."""
    if status is not None and status not in STATUSES:
        raise CliError(f"--status {status!r}: use one of {', '.join(STATUSES)}")
    found = _with_client(address, namespace, lambda client: list_runs(client, status, limit))
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in found], indent=2))
        return
    table = Table("run", "status", "graph", "version", "started", "closed")
    for r in found:
        started, closed = (f"{t:%Y-%m-%d %H:%M:%S}" if t else "" for t in (r.started_at, r.closed_at))
        table.add_row(r.run_id, r.status, r.graph or "", r.graph_version or "", started, closed)
    console.print(table)


@run_app.command("show")
def run_show(
    run_id: str,
    clearance: Annotated[list[str] | None, typer.Option(help="a data label you may see (repeat)")] = None,
    as_json: JsonOption = False,
    address: AddressOption = "127.0.0.1:7233",
    namespace: NamespaceOption = "default",
) -> None:
    """Show a run: status, graph, principal, and every step with its approval. Labelled values
    beyond --clearance are masked."""
    viewer = Principal(id="cli", clearance=clearance or [])

    async def show(client: Client) -> Any:
        try:
            return await show_run(client, run_id, viewer)
        except RunNotFound as exc:
            raise CliError(f"{exc} on {address} — chamberlain run list shows the runs there") from exc

    view = _with_client(address, namespace, show)
    if as_json:
        print(view.model_dump_json(indent=2))
        return
    who = view.principal.id if view.principal else "nobody"
    graph = f"{view.graph} v{view.graph_version}" if view.graph_version else view.graph
    console.print(f"[bold]{view.run_id}[/bold]  {view.status}  graph {graph}  for {who}", highlight=False)
    if view.steps is None:
        console.print("steps: no worker answered (start one: chamberlain worker)")
    else:
        table = Table("step", "node", "approval", "updates", "routing")
        for step in view.steps:
            updates = json.dumps(step.updates, ensure_ascii=False)[:70]
            table.add_row(step.step_id, step.node, step.approval or "", updates, "; ".join(step.routing)[:50])
        console.print(table)
    if view.pending_approval:
        p = view.pending_approval
        console.print(f"[yellow]waiting[/yellow] {p.step_id}: {p.ask} (approvers: {', '.join(p.approvers)})")
    if view.output is not None:
        console.print(f"output {json.dumps(view.output, ensure_ascii=False)}", highlight=False)
    if view.error:
        console.print(f"[red]error[/red] {view.error}", highlight=False)


@run_app.command("cancel")
def run_cancel(
    run_id: str,
    address: AddressOption = "127.0.0.1:7233",
    namespace: NamespaceOption = "default",
) -> None:
    """Ask a run to stop (it ends as canceled; a parked approval is abandoned)."""

    async def cancel(client: Client) -> None:
        try:
            await client.get_workflow_handle(run_id).cancel()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise CliError(f"no running run {run_id} on {address} — chamberlain run list --status running") from exc
            raise

    _with_client(address, namespace, cancel)
    console.print(f"cancel requested for [bold]{run_id}[/bold]")


# -- audit -----------------------------------------------------------------------------------------


def _audit_log(url: str | None) -> Any:
    """The audit log at ``url`` (default: in the data folder), which must exist: verifying an
    empty log that was never written would say "intact" about nothing."""
    from chamberlain.workflows._audit import AuditLog, AuditLogNotFound

    url = url or settings().audit_url
    try:
        return AuditLog.open(url)
    except AuditLogNotFound as exc:
        raise CliError(f"{exc} (or CHAMBERLAIN_AUDIT; the default follows CHAMBERLAIN_DATA)") from exc


@audit_app.command("verify")
def audit_verify(
    db: AuditOption = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="also check the log still holds this signed checkpoint")
    ] = None,
) -> None:
    """Check the hash chain; name the first record that was edited, deleted or moved. With
    ``--checkpoint`` (key in CHAMBERLAIN_AUDIT_KEY), a rewrite of the tail and head together too."""
    from chamberlain.workflows._audit import AuditLogError, checkpoint_key

    try:
        key = checkpoint_key() if checkpoint is not None else None
    except AuditLogError as exc:
        raise CliError(f"--checkpoint: {exc}") from exc
    log = _audit_log(db)
    problem = log.verify(checkpoint, key)
    if problem:
        errors.print(f"[red]audit log broken[/red]: {problem}")
        raise typer.Exit(1)
    console.print(f"{_count(sum(1 for _ in log.records()), 'record')}, chain intact")


@audit_app.command("checkpoint")
def audit_checkpoint(path: Path, db: AuditOption = None) -> None:
    """Write the log's head, signed with CHAMBERLAIN_AUDIT_KEY, to PATH: keep it outside the
    database, and `audit verify --checkpoint PATH` catches a later rewrite of the tail."""
    from chamberlain.workflows._audit import AuditLogError, checkpoint_key

    try:
        mark = _audit_log(db).checkpoint(path, checkpoint_key())
    except AuditLogError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"{path}: cannot write the checkpoint there ({exc.strerror})") from exc
    console.print(f"checkpoint of {_count(mark.records, 'record')} written to {path}")


@audit_app.command("export")
def audit_export(out: Path, db: AuditOption = None) -> None:
    """Write every record as JSON Lines."""
    console.print(f"wrote {_count(_audit_log(db).export(out), 'record')} to {out}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# -- serving -----------------------------------------------------------------------------------------


@app.command()
def worker(
    address: AddressOption = "127.0.0.1:7233",
    namespace: NamespaceOption = "default",
    task_queue: Annotated[str, typer.Option(envvar="CHAMBERLAIN_TASK_QUEUE")] = TASK_QUEUE,
    tls: Annotated[bool, typer.Option(envvar="TEMPORAL_TLS", help="connect with TLS")] = False,
    tls_cert: Annotated[Path | None, typer.Option(envvar="TEMPORAL_TLS_CERT")] = None,
    tls_key: Annotated[Path | None, typer.Option(envvar="TEMPORAL_TLS_KEY")] = None,
    tls_ca: Annotated[Path | None, typer.Option(envvar="TEMPORAL_TLS_CA")] = None,
    audit: AuditOption = None,
    app_name: AppOption = None,
) -> None:
    """Run a worker against any Temporal service: start more of them to scale out. Every step
    passes the permission gate (Cedar policy, audited); workers of one deployment share
    CHAMBERLAIN_GRANT_SECRET and the audit database."""
    from temporalio.client import TLSConfig

    from chamberlain.workflows._converter import connect

    tls_config: TLSConfig | bool = tls
    if tls_cert or tls_ca:
        with reading(tls_cert or tls_ca or "", "certificate"):
            tls_config = TLSConfig(
                client_cert=tls_cert.read_bytes() if tls_cert else None,
                client_private_key=tls_key.read_bytes() if tls_key else None,
                server_root_ca_cert=tls_ca.read_bytes() if tls_ca else None,
            )
    loaded = _app(app_name)
    if loaded.setup:
        loaded.setup()
    gate = loaded.gate(audit or settings().audit_url, None)  # the key from CHAMBERLAIN_GRANT_SECRET

    async def serve() -> None:
        try:
            client = await connect(address, namespace, tls=tls_config)
        except RuntimeError as exc:
            raise TemporalUnavailable(f"Temporal at {address} is unreachable ({exc}) — check --address") from exc
        console.print(f"worker on [bold]{address}[/bold] namespace {namespace}, task queue {task_queue}")
        shared = settings().runs  # CHAMBERLAIN_RUNS: the run index the HTTP servers read; this worker counts in it
        index = RunIndex(shared) if shared else None
        worker = create_worker(
            client, models=loaded.models, tools=loaded.tools, task_queue=task_queue, gate=gate, run_index=index
        )
        async with worker:
            await _until_interrupted()

    asyncio.run(serve())


def _check_sources(path: Path, loaded: App) -> None:
    """Refuse, before anything starts, webhook sources with mistakes, or whose graph uses a tool
    the app does not offer (its runs would fail on every event)."""
    for source in _catalog(path).sources:
        try:
            load_graph(source.graph, tools=loaded.tools)
        except GraphSpecError as exc:
            raise CliError(
                f"{path}: source {source.name}: {exc.issues[0]} — not offered by app {loaded.name}: pass the app "
                "that offers the graph's tools (--app or CHAMBERLAIN_APP)"
            ) from exc


@app.command()
def dev(
    port: Annotated[int, typer.Option(min=1, max=65535)] = 7233,
    ui_port: Annotated[int, typer.Option(min=1, max=65535)] = 8233,
    model_port: Annotated[
        int, typer.Option(min=1, max=65535, help="port of the embedded model's OpenAI-compatible API")
    ] = 8766,
    model: Annotated[bool, typer.Option(help="serve the embedded model (SmolLM2-135M, llama.cpp)")] = True,
    http_port: Annotated[
        int, typer.Option(min=1, max=65535, help="port of the HTTP server (webhooks, runs, approvals API)")
    ] = 8000,
    app_name: AppOption = None,
) -> None:
    """Start the embedded stack: Temporal dev server (SQLite in the data folder), the embedded
    model, a worker and the HTTP server (webhook sources and users from CHAMBERLAIN_WEBHOOKS
    and CHAMBERLAIN_USERS). Ctrl-C stops everything."""
    import os

    config = settings()
    loaded = _app(app_name)
    if config.webhooks:
        _check_sources(existing(config.webhooks, "webhook sources file"), loaded)
    data = config.ensure_data()
    demo_admin = None
    if config.users is None:  # the console's users: a demo admin, created once in the data folder
        from chamberlain.server.console import ensure_demo_admin

        users_file, demo_admin = ensure_demo_admin(data)
        config = config.model_copy(update={"users": users_file})
    if loaded.setup:
        loaded.setup()
    with ExitStack() as children:  # every child stops on every way out, a failed start included
        children.callback(console.print, "stopped")
        model_server = None
        if model:
            model_server = EmbeddedModelServer(port=model_port, log_file=config.log("model"))
            children.callback(model_server.stop)
            with console.status("starting the embedded model"):
                model_server.start()
            os.environ["CHAMBERLAIN_EMBEDDED_URL"] = model_server.base_url
            loaded = _app(app_name)  # its models now find the embedded one
        server = DevServer(
            config.temporal_db,
            port=port,
            ui_port=ui_port,
            log_file=config.log("temporal"),
            codec_endpoint=f"http://127.0.0.1:{http_port}/codec",  # the Temporal UI decodes through the HTTP server
        )
        os.environ["CHAMBERLAIN_PAYLOAD_KEYS"] = server.payload_keys()  # the HTTP server shares the stack's keys
        children.callback(server.stop)

        async def serve() -> None:
            client = await server.start()
            public = f"http://127.0.0.1:{http_port}"
            http_settings = config.model_copy(
                update={
                    "temporal_address": server.address,
                    "public_url": public,
                    "temporal_ui": f"http://127.0.0.1:{ui_port}",
                }
            )
            try:
                http = BackgroundServer(create_app(http_settings), port=http_port).start()
            except RuntimeError as exc:
                raise CliError(f"--http-port {http_port}: {exc} (is the port in use?) — pick another port") from exc
            children.callback(http.stop)
            gate = loaded.development_gate(data) if config.audit is None else loaded.gate(config.audit_url, None)
            usage = UsageLedger(config.usage_url, config.budgets)  # the console's cost view and department budgets
            index = RunIndex(config.run_index_url)  # the worker counts steps, tokens and cost in the runs list
            async with create_worker(
                client, models=loaded.models, tools=loaded.tools, gate=gate, usage=usage, run_index=index
            ):
                console.print(f"audit log    [bold]{config.audit_url}[/bold]  (chamberlain audit verify)")
                console.print(f"HTTP         [bold]{http.url}[/bold]  (webhooks, /runs, approvals API, /docs)")
                console.print(f"Temporal     [bold]{server.address}[/bold]  (data in {data}/)")
                console.print(f"Temporal UI  [bold]http://127.0.0.1:{ui_port}[/bold]")
                if model_server:
                    console.print(f"model        [bold]{model_server.base_url}[/bold]  ({EMBEDDED_MODEL})")
                console.print(f"console      [bold]{http.url}/console[/bold]  (users in {config.users})")
                if demo_admin:  # shown this once: only its hash is stored
                    console.print(
                        f"             demo admin [bold]{demo_admin.user_id}[/bold] / "
                        f"password [bold]{demo_admin.password}[/bold] — shown only now"
                    )
                console.print(f"worker       task queue [bold]{TASK_QUEUE}[/bold], app {loaded.name} — Ctrl-C stops")
                await _until_interrupted()

        asyncio.run(serve())


@app.command()
def serve(
    host: str = "127.0.0.1", port: Annotated[int, typer.Option(min=1, max=65535)] = 8000, app_name: AppOption = None
) -> None:
    """Run the HTTP server (webhooks, runs and approvals API); configured by CHAMBERLAIN_*
    variables. With --app, webhook sources are checked against that app's tools first."""
    import uvicorn

    config = settings()
    if config.webhooks:
        config = config.model_copy(update={"webhooks": existing(config.webhooks, "webhook sources file")})
        if app_name:
            _check_sources(config.webhooks, _app(app_name))  # type: ignore[arg-type]
    uvicorn.run(create_app(config), host=host, port=port)


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="the project's name, e.g. acme (its package: acme)")],
    parent: Annotated[Path, typer.Option("--in", help="the folder to create it in")] = Path("."),
) -> None:
    """Create a business's own project: a workflow, graphs in YAML and Python, an adapter, a Cedar
    policy, a webhook source, evaluation cases and tests that pass at once. Never overwrites."""
    from chamberlain.server._scaffold import ScaffoldError, scaffold

    try:
        target = scaffold(name, parent)
    except ScaffoldError as exc:
        raise CliError(str(exc)) from exc
    console.print(f"created [bold]{target}[/bold] — cd {target} && python -m pytest; its README says what next")


# -- webhooks and approvals ------------------------------------------------------------------------


def _catalog(path: Path) -> Any:
    """The webhook sources file, checked (secrets, payload models, graphs) or one error per problem."""
    from chamberlain.server._sources import SourceCatalog, SourceError

    path = existing(path, "webhook sources file")
    with reading(path, "webhook sources file"):
        try:
            return SourceCatalog.load(path)
        except SourceError as exc:
            raise CliError("; ".join(exc.problems)) from exc


def _signed(sources: Path, name: str, file: Path, event_id: str | None) -> tuple[bytes, dict[str, str]]:
    catalog = _catalog(sources)
    source = catalog.get(name)
    if source is None:
        known = ", ".join(s.name for s in catalog.sources)
        raise CliError(f"{sources}: no source named {name!r} (known: {known})")
    body = existing(file, "event file").read_bytes()
    return body, source.sign_request(body, event_id)


@webhook_app.command("sign")
def webhook_sign(source: str, file: Path, sources: SourcesOption, event_id: str | None = None) -> None:
    """Print the headers that sign FILE as SOURCE would."""
    for key, value in _signed(sources, source, file, event_id)[1].items():
        print(f"{key}: {value}")


@webhook_app.command("send")
def webhook_send(
    source: str,
    file: Path,
    sources: SourcesOption,
    url: UrlOption = "http://127.0.0.1:8000",
    event_id: str | None = None,
) -> None:
    """Sign FILE as SOURCE and post it; print the answer (202 carries the run's ID and URL)."""
    body, headers = _signed(sources, source, file, event_id)
    response = httpx.post(f"{url.rstrip('/')}/webhooks/{source}", content=body, headers=headers, timeout=30)
    console.print(f"{response.status_code} {response.reason_phrase}")
    console.print_json(response.text)
    if response.status_code >= 400:
        raise typer.Exit(1)


@app.command()
def approve(
    run: str,
    step: str,
    reject: Annotated[bool, typer.Option("--reject", help="reject instead of approving")] = False,
    changes: Annotated[bool, typer.Option("--changes", help="ask for changes instead of approving")] = False,
    reason: str = "",
    url: UrlOption = "http://127.0.0.1:8000",
    token: Annotated[str, typer.Option(envvar="CHAMBERLAIN_TOKEN", help="your API token")] = "",
) -> None:
    """Decide a pending approval, as the user the token belongs to (the same update as the API)."""
    if not token.strip():
        raise CliError("no API token — pass --token or set CHAMBERLAIN_TOKEN (an entry of CHAMBERLAIN_USERS)")
    outcome = "reject" if reject else "request_changes" if changes else "approve"
    response = httpx.post(
        f"{url.rstrip('/')}/api/approvals/{run}",
        json={"step_id": step, "outcome": outcome, "reason": reason},
        headers={"Authorization": f"Bearer {token.strip()}"},
        timeout=30,
    )
    if response.status_code >= 400:
        detail = response.json().get("detail", response.text) if response.content else response.reason_phrase
        raise CliError(f"{response.status_code} from {url}: {detail}")
    print(response.status_code, response.text)


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# -- evaluation ------------------------------------------------------------------------------------


@app.command("eval")
def eval_cases(
    cases: Annotated[Path, typer.Argument(help="a JSON Lines case file (docs/evaluation.md)")],
    models: Annotated[str | None, typer.Option(help="models.yaml, or MODULE:ATTR \\[default: the app's]")] = None,
    compare: Annotated[tuple[str, str] | None, typer.Option(help="two configurations, side by side")] = None,
    graph: Annotated[Path | None, typer.Option(help="the graph \\[default: the webhook source's]")] = None,
    sources: Annotated[
        Path | None, typer.Option(help="webhook sources \\[default: webhooks.yaml by the cases]")
    ] = None,
    source: Annotated[str | None, typer.Option(help="the webhook source the cases' events arrive at")] = None,
    record: Annotated[Path | None, typer.Option(help="record every tool answer to this JSON Lines file")] = None,
    replay: Annotated[Path | None, typer.Option(help="answer tools from this recording: no writes")] = None,
    live_reads: Annotated[bool, typer.Option(help="replay: read live what the recording lacks")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N cases")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results as JSON here")] = None,
    chart: Annotated[Path | None, typer.Option(help="write a PNG chart here")] = None,
    min_accuracy: Annotated[float | None, typer.Option(help="exit 1 below this share of all-right cases")] = None,
    min_field: Annotated[list[str] | None, typer.Option(help="FIELD=SHARE: exit 1 below it (repeat)")] = None,
    max_escalation_rate: Annotated[float | None, typer.Option(help="exit 1 above this escalation rate")] = None,
    max_p95: Annotated[float | None, typer.Option(help="exit 1 above this p95 latency (seconds)")] = None,
    embedded: Annotated[bool | None, typer.Option(help="start the embedded model \\[default: if needed]")] = None,
    work: Annotated[
        Path | None, typer.Option(help="keep stores, audit logs and Temporal here \\[default: temp]")
    ] = None,
    case_timeout: Annotated[float, typer.Option(min=1, help="stop a case's run after this many seconds")] = 600,
    address: Annotated[
        str | None, typer.Option(envvar="TEMPORAL_ADDRESS", help="Temporal \\[default: embedded]")
    ] = None,
    app_name: AppOption = None,
) -> None:
    """Run cases through the real workflow (fresh store per case, the gate, Temporal) and report
    per-field accuracy, escalations, denials, latency, tokens and cost; --compare two model
    configurations (McNemar's exact test); --record / --replay tool answers (shadow replay)."""
    from chamberlain.server._evaluation import EvalOptions, run_eval

    limits = {"min_accuracy": min_accuracy, "max_escalation_rate": max_escalation_rate, "max_p95": max_p95}
    thresholds = {key: value for key, value in limits.items() if value is not None}
    for item in min_field or []:
        name, _, share = item.partition("=")
        try:
            thresholds[f"min_{name.strip()}"] = float(share)
        except ValueError:
            raise CliError(f"--min-field {item!r}: write FIELD=SHARE, e.g. --min-field intent=0.9") from None
    if models and compare:
        raise CliError("--models and --compare: give one configuration or two, not both")
    loaded = _app(app_name)
    options = EvalOptions(
        cases=existing(cases, "case file"),
        limit=limit,
        graph=graph,
        source=source,
        sources=existing(sources, "webhook sources file") if sources else None,
        configs=list(compare) if compare else [models] if models else [],
        record=record,
        replay=existing(replay, "recording") if replay else None,
        live_reads=live_reads,
        json_out=json_out,
        chart=chart,
        thresholds=thresholds,
        address=address,
        work=work,
        embedded=embedded,
        case_timeout=case_timeout,
    )
    code = run_eval(options, loaded, lambda path: _load(path, loaded), console)
    if code:
        raise typer.Exit(code)


# -- the front door ----------------------------------------------------------------------------------

KNOWN = (CliError, TemporalUnavailable, AppError, AgentError, AuditLogError, OSError, ValueError, ImportError, KeyError)


def main(argv: list[str] | None = None) -> None:
    """Run the command; a known error becomes one line on stderr and exit status 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    if str(Path.cwd()) not in sys.path:  # like uvicorn: a project's own modules (apps, payloads, graphs) import
        sys.path.insert(0, str(Path.cwd()))
    debug = "--debug" in args
    if debug:  # accepted anywhere in the line, not only before the command
        args = ["--debug", *(a for a in args if a != "--debug")]
    try:
        app(args=args, prog_name="chamberlain")
    except (*KNOWN, yaml.YAMLError, httpx.TransportError) as exc:
        message = explain(exc)
        if debug or message is None:
            raise
        errors.print(f"[red]error[/red] {message}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
