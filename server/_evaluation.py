"""``chamberlain eval``: the command's work — cases in, a table, JSON, a chart and an exit code out.

Where the parts come from: the cases' webhook ``event``\\ s go through the webhook source that
receives them in production (``webhooks.yaml`` next to the case file, or ``--sources``), so
validation and the mapping to the graph's input are the real ones; the graph is the source's
(or ``--graph``); tools are the app's, over a fresh seeded store per case when the app offers
``evaluation_tools(database_url)``; a configuration is a ``models.yaml`` file or
``MODULE:ATTR`` naming a function that returns a ``ModelRegistry`` (a scripted model).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from temporalio.client import Client

from chamberlain.agents._models import ModelCatalog, ModelRegistry
from chamberlain.agents._spec import GraphSpec
from chamberlain.server._app import App
from chamberlain.server._errors import CliError
from chamberlain.server._sources import PayloadError, SourceCatalog, WebhookSource
from chamberlain.tools._recording import Recording
from chamberlain.tools._registry import ToolRegistry
from chamberlain.workflows.evaluation import (
    Case,
    CaseFileError,
    CaseResult,
    Subject,
    Summary,
    Tape,
    below,
    chart,
    compare,
    evaluate,
    load_cases,
    results,
    summarize,
    table,
)
from chamberlain.workflows.evaluation.runner import ToRun, case_input, sqlite_store

STORE_HOOK = "evaluation_tools"


@dataclass
class EvalOptions:
    cases: Path
    limit: int | None = None
    graph: Path | None = None
    sources: Path | None = None
    source: str | None = None
    configs: list[str] = field(default_factory=list)
    record: Path | None = None
    replay: Path | None = None
    live_reads: bool = False
    json_out: Path | None = None
    chart: Path | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    address: str | None = None
    work: Path | None = None
    embedded: bool | None = None
    case_timeout: float = 600.0


def run_eval(options: EvalOptions, app: App, load: Callable[[Path], GraphSpec], console: Console) -> int:
    """Evaluate; print the findings; answer the exit code (1 when a threshold is missed)."""
    try:
        cases = load_cases(options.cases, options.limit)
    except CaseFileError as exc:
        raise CliError(f"{exc} — see docs/evaluation.md for the case format") from exc
    graph, to_run = _graph_and_input(options, cases, load)
    if options.record and (len(options.configs) > 1 or options.replay):
        raise CliError("--record: record one configuration, live (not with --compare or --replay)")
    if options.record and options.record.exists():
        raise CliError(f"--record {options.record}: exists — remove it or record to a new file")
    recording = None
    if options.replay:
        try:
            recording = Recording.load(options.replay)
        except ValueError as exc:
            raise CliError(f"--replay: {exc}") from exc
    elif options.record:
        recording = Recording(options.record)
    mode = "replay" if options.replay else "record" if options.record else "live"
    for noisy in ("temporalio", "httpx"):  # the table says what happened; per-request logs drown it
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)  # a failed case is reported below, once
    with ExitStack() as stack:
        work = options.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chamberlain-eval-")))
        if _needs_embedded(options):
            _start_embedded(stack, work, console)
        subjects = [
            Subject(
                name=label, graph=graph, models=models, policies=app.policies, store=_store(app, work), to_run=to_run
            )
            for label, models in _configs(options.configs, app)
        ]
        found = asyncio.run(_evaluate(options, subjects, cases, work, recording, mode, stack, console))
    return _report(options, found, console)


def _graph_and_input(
    options: EvalOptions, cases: list[Case], load: Callable[[Path], GraphSpec]
) -> tuple[GraphSpec, ToRun]:
    """The graph, and how each case becomes a run's input: through its webhook source, or as given."""
    if not any(case.event is not None for case in cases):
        if options.graph is None:
            raise CliError("--graph: the cases give the graph's input directly; name the graph file")
        return load(options.graph), case_input
    source = _source(options)
    graph = load(options.graph or Path(source.graph))
    inputs: dict[str, tuple[dict[str, Any], Any]] = {}
    for case in cases:  # every payload is checked before anything runs
        if case.event is None:
            inputs[case.id] = case_input(case)
            continue
        try:
            inputs[case.id] = source.run_input(source.payload_model.model_validate(case.event))
        except (ValidationError, PayloadError) as exc:
            raise CliError(
                f"{options.cases}: case {case.id}: its event is not a valid {source.name} payload: "
                f"{str(exc).splitlines()[0]} — fix the case"
            ) from exc
    return graph, lambda case: inputs[case.id]


def _source(options: EvalOptions) -> WebhookSource:
    path = options.sources or options.cases.with_name("webhooks.yaml")
    if not path.exists():
        raise CliError(f"the cases carry webhook events but {path} does not exist — pass --sources webhooks.yaml")
    catalog = SourceCatalog.load(path, secrets=False)  # events are read here, never verified
    if options.source is None and len(catalog.sources) == 1:
        return catalog.sources[0]
    chosen = catalog.get(options.source or "")
    if chosen is None:
        known = ", ".join(s.name for s in catalog.sources)
        raise CliError(f"--source {options.source or ''}: name the webhook source of the events (in {path}: {known})")
    return chosen


def _store(app: App, work: Path) -> Callable[[Path], ToolRegistry]:
    """Fresh seeded stores when the app offers ``evaluation_tools(url)``; else its own tools."""
    hook = getattr(importlib.import_module(app.name), STORE_HOOK, None)
    if hook is None:
        return lambda folder: app.tools
    return sqlite_store(hook, work / "store")


def _configs(names: list[str], app: App) -> Iterator[tuple[str, ModelRegistry]]:
    if not names:  # the app's own, made now: an embedded model started for the evaluation is found
        module = importlib.import_module(app.name)
        parts = app.name.split(".")
        yield parts[-2] if parts[-1] == "app" and len(parts) > 1 else parts[-1], module.models()
        return
    labels = [_label(name) for name in names]
    if len(set(labels)) < len(labels):
        labels = [f"{chr(65 + i)}:{label}" for i, label in enumerate(labels)]
    for label, name in zip(labels, names, strict=True):
        yield label, _models(name)


def _label(name: str) -> str:
    return name.rpartition(":")[2] if _is_target(name) else Path(name).stem


def _is_target(name: str) -> bool:
    return ":" in name and Path(name).suffix.lower() not in (".yaml", ".yml")


def _models(name: str) -> ModelRegistry:
    """A configuration: a models.yaml file, or MODULE:ATTR returning a ModelRegistry."""
    if _is_target(name):
        module, _, attr = name.partition(":")
        value = getattr(importlib.import_module(module), attr, None)
        registry = value() if callable(value) and not isinstance(value, ModelRegistry) else value
        if not isinstance(registry, ModelRegistry):
            raise CliError(f"{name}: is not a ModelRegistry (nor a function returning one)")
        return registry
    path = Path(name)
    if not path.exists():
        raise CliError(f"{name}: no such models file — name a models.yaml, or MODULE:ATTR returning a ModelRegistry")
    try:
        catalog = ModelCatalog.load(path)
    except ValidationError as exc:
        raise CliError(f"{name}: not a models file: {str(exc).splitlines()[0]}") from exc
    return ModelRegistry.from_catalog(catalog, embedded_url=os.environ.get("CHAMBERLAIN_EMBEDDED_URL"))


def _needs_embedded(options: EvalOptions) -> bool:
    if options.embedded is not None:
        return options.embedded
    return not os.environ.get("CHAMBERLAIN_EMBEDDED_URL") and not all(_is_target(c) for c in options.configs or ["-"])


def _start_embedded(stack: ExitStack, work: Path, console: Console) -> None:
    from chamberlain.agents._embedded import EmbeddedModelServer

    server = EmbeddedModelServer(log_file=work / "model.log")
    with console.status("starting the embedded model"):
        server.start()
    stack.callback(server.stop)
    os.environ["CHAMBERLAIN_EMBEDDED_URL"] = server.base_url
    stack.callback(os.environ.pop, "CHAMBERLAIN_EMBEDDED_URL", None)


async def _evaluate(
    options: EvalOptions,
    subjects: list[Subject],
    cases: list[Case],
    work: Path,
    recording: Recording | None,
    mode: str,
    stack: ExitStack,
    console: Console,
) -> list[tuple[Summary, list[CaseResult]]]:
    client = await _client(options.address, work, stack)
    recorded = recording.outcomes() if recording is not None and mode == "replay" else None
    found = []
    for subject in subjects:
        tape = Tape(mode=mode, recording=recording, live_reads=options.live_reads)  # type: ignore[arg-type]
        with _progress(console) as progress:
            task = progress.add_task(subject.name, total=len(cases))

            def advance(case: Case, outcome: Any, task: Any = task, name: str = subject.name) -> None:
                mark = "[red]failed[/red]" if outcome.status == "failed" else outcome.end
                progress.update(task, advance=1, description=f"{name}: {case.id} → {mark}")

            outcomes = await evaluate(client, subject, cases, work, tape, on_case=advance, timeout=options.case_timeout)
        scored = results(cases, outcomes, recorded)
        found.append((summarize(subject.name, scored), scored))
        if tape.gone_live:
            console.print(f"[yellow]replay[/yellow] read live (not in the recording): {'; '.join(tape.gone_live)}")
    return found


async def _client(address: str | None, work: Path, stack: ExitStack) -> Client:
    from chamberlain.workflows._converter import connect
    from chamberlain.workflows._devserver import DevServer

    if address:
        return await connect(address)
    server = DevServer(work / "temporal.db", log_file=work / "temporal.log")
    client = await server.start()
    stack.callback(server.stop)
    return client


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield progress


def _report(options: EvalOptions, found: list[tuple[Summary, list[CaseResult]]], console: Console) -> int:
    summaries = [summary for summary, _ in found]
    console.print(table(summaries))
    for summary, scored in found:
        _misses(summary, scored, console)
    comparison = None
    if len(found) == 2:
        (a, a_found), (b, b_found) = found
        comparison = compare(a, a_found, b, b_found)
        console.print(
            f"[bold]{a.config} vs {b.config}[/bold]: right only with {a.config}: {len(comparison.only_a_right)} "
            f"{comparison.only_a_right[:10]}, only with {b.config}: {len(comparison.only_b_right)} "
            f"{comparison.only_b_right[:10]}; McNemar exact p = {comparison.p_value:.4g}"
            + (" (significant at 0.05)" if comparison.p_value < 0.05 else " (not significant at 0.05)"),
            highlight=False,
        )
    if options.json_out:
        document = {
            "summaries": [s.model_dump(mode="json") for s in summaries],
            "cases": {s.config: [r.model_dump(mode="json") for r in scored] for s, scored in found},
            "comparison": comparison.model_dump(mode="json") if comparison else None,
        }
        options.json_out.parent.mkdir(parents=True, exist_ok=True)
        options.json_out.write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
        console.print(f"wrote {options.json_out}")
    if options.chart:
        try:
            console.print(f"wrote {chart(summaries, options.chart)}")
        except ModuleNotFoundError as exc:
            raise CliError(f"--chart needs matplotlib ({exc}) — pip install 'chamberlain[eval]'") from exc
    misses = [miss for summary in summaries for miss in below(summary, options.thresholds)]
    for miss in misses:
        console.print(f"[red]below threshold[/red] {miss}", highlight=False)
    return 1 if misses else 0


def _misses(summary: Summary, scored: list[CaseResult], console: Console, limit: int = 20) -> None:
    """The cases a configuration got wrong (and, replayed, where it ended otherwise), field by field."""
    wrong = [r for r in scored if not r.correct or r.differs]
    if not wrong:
        return
    view = Table(
        "case",
        "wrong fields (got)",
        "differs from recording",
        title=f"{summary.config}: cases to look at",
        title_justify="left",
    )
    for r in wrong[:limit]:
        got = ", ".join(f"{name} ({_short(r.outcome.field(name))})" for name, ok in r.scores.items() if not ok)
        if r.outcome.status == "failed":
            reason = str(r.outcome.error).rsplit(" failed: ", 1)[-1]  # the cause, not the step's name again
            got = f"run failed: {_short(reason, 160)}" + (f"; {got}" if got else "")
        view.add_row(r.case, got or "—", ", ".join(r.differs) or "—")
    console.print(view)
    if len(wrong) > limit:
        console.print(f"… and {len(wrong) - limit} more (--json has them all)")


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"
