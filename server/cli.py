"""The ``chamberlain`` command: validate and run graphs, run workers and the embedded stack."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from chamberlain.agents.compiler import run_in_process
from chamberlain.agents.embedded import EMBEDDED_MODEL, EmbeddedModelServer
from chamberlain.agents.exceptions import GraphSpecError, GraphWarning
from chamberlain.agents.loader import load_graph
from chamberlain.agents.spec import GraphSpec
from chamberlain.server.app import load_app
from chamberlain.server.http import BackgroundServer, ServerSettings, create_app
from chamberlain.workflows.converter import connect
from chamberlain.workflows.devserver import DevServer
from chamberlain.workflows.worker import TASK_QUEUE, create_worker

app = typer.Typer(help="Chamberlain: durable, permission-checked agent workflows on your private model.")
graph_app = typer.Typer(help="Validate, inspect and run agent graphs.")
webhook_app = typer.Typer(help="Sign and send webhooks, for demos and debugging.")
app.add_typer(graph_app, name="graph")
audit_app = typer.Typer(help="Verify and export the tamper-evident audit log.")
app.add_typer(webhook_app, name="webhook")
app.add_typer(audit_app, name="audit")
AuditOption = Annotated[str, typer.Option("--db", envvar="CHAMBERLAIN_AUDIT", help="the audit log's database URL")]


@audit_app.command("verify")
def audit_verify(db: AuditOption = "sqlite:///.chamberlain/audit.sqlite") -> None:
    """Check the hash chain; name the first record that was edited, deleted or moved."""
    from chamberlain.workflows.audit import AuditLog

    log = AuditLog(db)
    problem = log.verify()
    if problem:
        errors.print(f"[red]audit log broken[/red]: {problem}")
        raise typer.Exit(1)
    console.print(f"{sum(1 for _ in log.records())} records, chain intact")


@audit_app.command("export")
def audit_export(out: Path, db: AuditOption = "sqlite:///.chamberlain/audit.sqlite") -> None:
    """Write every record as JSON Lines."""
    from chamberlain.workflows.audit import AuditLog

    console.print(f"wrote {AuditLog(db).export(out)} records to {out}")


console = Console()
errors = Console(stderr=True)

AppOption = Annotated[str | None, typer.Option("--app", help="module offering tools() and models()")]
DATA_DIR = Path(os.environ.get("CHAMBERLAIN_DATA", ".chamberlain"))


def _load(path: Path, app_name: str | None, check_tools: bool = True) -> GraphSpec:
    """Load a graph; with the app's tools and models, also run the static safety checks."""
    app = load_app(app_name) if check_tools else None
    with warnings.catch_warnings(record=True) as caught:
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
    failed = False
    for path in files:
        try:
            spec = _load(path, app_name)
            console.print(f"[green]ok[/green] {path}: graph '{spec.name}', {len(spec.nodes)} nodes")
        except typer.Exit:
            failed = True
    if failed:
        raise typer.Exit(1)


@graph_app.command("schema")
def graph_schema() -> None:
    """Print the JSON schema of graph files (point an editor's ``$schema`` at it)."""
    print(json.dumps(GraphSpec.model_json_schema(by_alias=True), indent=2))


@graph_app.command("run")
def graph_run(
    file: Path,
    input: Annotated[str, typer.Option("--input", help="initial state as JSON")] = "{}",
    approve: Annotated[bool, typer.Option(help="answer approval steps with approve")] = False,
    app_name: AppOption = None,
) -> None:
    """Run a graph once in this process with LangGraph (no durability): for quick iteration."""
    from chamberlain.agents.steps import ApprovalDecision, ApprovalRequest

    spec = _load(file, app_name)
    loaded = load_app(app_name)

    def decide(request: ApprovalRequest) -> ApprovalDecision:
        outcome = "approve" if approve else "reject"
        console.print(f"[yellow]approval[/yellow] {request.ask} → {outcome}")
        return ApprovalDecision(step_id=request.step.step_id, outcome=outcome, approver="cli")

    trace: list[Any] = []
    result = asyncio.run(
        run_in_process(spec, json.loads(input), models=loaded.models, tools=loaded.tools, approve=decide, trace=trace)
    )
    table = Table("step", "node", "updates", "next")
    for i, step in enumerate(trace, 1):
        table.add_row(str(i), step.node, json.dumps(step.updates, ensure_ascii=False)[:80], step.next or "—")
    console.print(table)
    console.print_json(result.model_dump_json())


@app.command()
def worker(
    address: Annotated[str, typer.Option(envvar="TEMPORAL_ADDRESS")] = "127.0.0.1:7233",
    namespace: Annotated[str, typer.Option(envvar="TEMPORAL_NAMESPACE")] = "default",
    task_queue: Annotated[str, typer.Option(envvar="CHAMBERLAIN_TASK_QUEUE")] = TASK_QUEUE,
    tls: Annotated[bool, typer.Option(envvar="TEMPORAL_TLS", help="connect with TLS")] = False,
    tls_cert: Annotated[Path | None, typer.Option(envvar="TEMPORAL_TLS_CERT")] = None,
    tls_key: Annotated[Path | None, typer.Option(envvar="TEMPORAL_TLS_KEY")] = None,
    tls_ca: Annotated[Path | None, typer.Option(envvar="TEMPORAL_TLS_CA")] = None,
    audit: Annotated[
        str, typer.Option(envvar="CHAMBERLAIN_AUDIT", help="audit log database URL; '' runs without the gate")
    ] = "sqlite:///.chamberlain/audit.sqlite",
    app_name: AppOption = None,
) -> None:
    """Run a worker against any Temporal service: start more of them to scale out. Every step
    passes the permission gate (Cedar policy, audited) unless --audit is empty; workers of
    one deployment share CHAMBERLAIN_GRANT_SECRET and the audit database."""
    from temporalio.client import TLSConfig

    tls_config: TLSConfig | bool = tls
    if tls_cert or tls_ca:
        tls_config = TLSConfig(
            client_cert=tls_cert.read_bytes() if tls_cert else None,
            client_private_key=tls_key.read_bytes() if tls_key else None,
            server_root_ca_cert=tls_ca.read_bytes() if tls_ca else None,
        )
    loaded = load_app(app_name)

    async def serve() -> None:
        client = await connect(address, namespace, tls=tls_config)
        console.print(f"worker on [bold]{address}[/bold] namespace {namespace}, task queue {task_queue}")
        gate = loaded.gate(audit) if audit else None
        async with create_worker(client, models=loaded.models, tools=loaded.tools, task_queue=task_queue, gate=gate):
            await _until_interrupted()

    asyncio.run(serve())


@app.command()
def dev(
    port: int = 7233,
    ui_port: int = 8233,
    model_port: Annotated[int, typer.Option(help="port of the embedded model's OpenAI-compatible API")] = 8766,
    model: Annotated[bool, typer.Option(help="serve the embedded model (SmolLM2-135M, llama.cpp)")] = True,
    http_port: Annotated[int, typer.Option(help="port of the HTTP server (webhooks, approvals API)")] = 8000,
    app_name: AppOption = None,
) -> None:
    """Start the embedded stack: Temporal dev server (SQLite in .chamberlain/), the embedded
    model, a worker and the HTTP server (webhook sources and users from CHAMBERLAIN_WEBHOOKS
    and CHAMBERLAIN_USERS). Ctrl-C stops everything."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    model_server = None
    if model:
        with console.status("starting the embedded model"):
            model_server = EmbeddedModelServer(port=model_port, log_file=DATA_DIR / "model.log").start()
        os.environ["CHAMBERLAIN_EMBEDDED_URL"] = model_server.base_url
    loaded = load_app(app_name)
    server = DevServer(DATA_DIR / "temporal.db", port=port, ui_port=ui_port, log_file=DATA_DIR / "temporal.log")

    async def serve() -> None:
        client = await server.start()
        settings = ServerSettings(temporal_address=server.address, public_url=f"http://127.0.0.1:{http_port}")
        http = BackgroundServer(create_app(settings), port=http_port).start()
        audit = f"sqlite:///{DATA_DIR / 'audit.sqlite'}"
        async with create_worker(client, models=loaded.models, tools=loaded.tools, gate=loaded.gate(audit)):
            console.print(f"audit log    [bold]{audit}[/bold]  (chamberlain audit verify --db {audit})")
            console.print(f"HTTP         [bold]{http.url}[/bold]  (webhooks, approvals API, /docs)")
            console.print(f"Temporal     [bold]{server.address}[/bold]  (data in {DATA_DIR}/)")
            console.print(f"Temporal UI  [bold]http://127.0.0.1:{ui_port}[/bold]")
            if model_server:
                console.print(f"model        [bold]{model_server.base_url}[/bold]  ({EMBEDDED_MODEL})")
            console.print(f"worker       task queue [bold]{TASK_QUEUE}[/bold] — Ctrl-C stops everything")
            await _until_interrupted()
        http.stop()

    try:
        asyncio.run(serve())
    finally:
        server.stop()
        if model_server:
            model_server.stop()
        console.print("stopped")


SourcesOption = Annotated[Path, typer.Option("--sources", envvar="CHAMBERLAIN_WEBHOOKS", help="webhook sources YAML")]
UrlOption = Annotated[str, typer.Option("--url", envvar="CHAMBERLAIN_PUBLIC_URL", help="the Chamberlain HTTP server")]


def _signed(sources: Path, name: str, file: Path, event_id: str | None) -> tuple[bytes, dict[str, str]]:
    from chamberlain.server.signatures import sign
    from chamberlain.server.sources import SourceCatalog

    source = SourceCatalog.load(sources).get(name)
    if source is None:
        errors.print(f"[red]error[/red] {sources}: no source named {name!r}")
        raise typer.Exit(1)
    body = file.read_bytes()
    sig = source.signature
    headers = {"Content-Type": "application/json"}
    headers[sig.header] = sign(
        source.secret_values()[0], body, scheme=sig.scheme, encoding=sig.encoding, prefix=sig.prefix
    )
    if source.event_id.header:
        headers[source.event_id.header] = event_id or f"evt-{uuid.uuid4().hex[:16]}"
    return body, headers


@webhook_app.command("sign")
def webhook_sign(source: str, file: Path, sources: SourcesOption, event_id: str | None = None) -> None:
    """Print the headers that sign FILE as SOURCE would."""
    for key, value in _signed(sources, source, file, event_id)[1].items():
        print(f"{key}: {value}")


@webhook_app.command("send")
def webhook_send(source: str, file: Path, sources: SourcesOption, url: UrlOption = "http://127.0.0.1:8000",
                 event_id: str | None = None) -> None:  # fmt: skip
    """Sign FILE as SOURCE and post it; print the answer (202 carries the run's ID and URL)."""
    import httpx

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
    import httpx

    outcome = "reject" if reject else "request_changes" if changes else "approve"
    response = httpx.post(
        f"{url.rstrip('/')}/api/approvals/{run}",
        json={"step_id": step, "outcome": outcome, "reason": reason},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    print(response.status_code, response.text)
    if response.status_code >= 400:
        raise typer.Exit(1)


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the HTTP server (webhooks, approvals API); configured by CHAMBERLAIN_* variables."""
    import uvicorn

    from chamberlain.server.http import create_app

    uvicorn.run(create_app(), host=host, port=port)


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main() -> None:
    app()
