"""Record a run's tool calls, and replay them with no side effects (shadow replay).

:class:`RecordingTools` wraps a :class:`ToolRegistry`: every call's output (or refusal) is
appended to a JSON Lines :class:`Recording`, keyed by run and step (``"<node>/<visit>"``),
together with the resource each step was decided on. :class:`ReplayingTools` answers the
same calls from that file and never calls a write: a run replayed with another model or
prompt meets the world exactly as the recorded run met it, and changes nothing in it.

A call the recording does not hold — another order, a step the recorded run never took —
is an error (:class:`NotRecorded`) for a write; a read is an error too unless ``live_reads``,
when it is read from the live systems (reads change nothing). A step's resource is always
either the recorded one or read live: resolving a resource only reads.

The gate resolves a step's resource before it calls the tool, with only the arguments in
hand; it names the step it decides in :data:`current_step` so the resource can be recorded
and replayed per step.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from chamberlain.tools._adapter import Effect, Resource, ToolAdapter, ToolContext
from chamberlain.tools._exceptions import ToolError, ToolInputInvalid, ToolRejected
from chamberlain.tools._registry import ToolRegistry

current_step: ContextVar[str | None] = ContextVar("chamberlain_current_step", default=None)
"""The step ID (``<run>/<node>/<visit>``) whose resource the permission gate is resolving."""

RunKey = Callable[[str], str]
REFUSALS: dict[str, type[ToolError]] = {"ToolRejected": ToolRejected, "ToolInputInvalid": ToolInputInvalid}


class RecordingError(ValueError):
    """A recording file that cannot be read: names the file and line."""


class NotRecorded(ToolError):
    """A replayed call the recording does not answer (a write, or a read without live reads)."""


def split_step(step_id: str) -> tuple[str, str]:
    """``"run/with/slashes/node/3"`` → ``("run/with/slashes", "node/3")``."""
    run, node, visit = step_id.rsplit("/", 2)
    return run, f"{node}/{visit}"


def _canonical(args: BaseModel) -> dict[str, Any]:
    dumped: dict[str, Any] = args.model_dump(mode="json")
    return dumped


class Recording:
    """A JSON Lines file of ``call``, ``resource`` and ``outcome`` entries, by run and step."""

    def __init__(self, path: Path, entries: list[dict[str, Any]] | None = None) -> None:
        self.path = path
        self.entries: list[dict[str, Any]] = entries or []
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> Recording:
        """Read a recording, naming the line of any entry that is not a JSON object with a run."""
        if not path.exists():
            raise RecordingError(f"{path}: no such recording — record one first with --record {path}")
        entries = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordingError(f"{path}:{number}: not JSON ({exc.msg}) — re-record the file") from exc
            if not isinstance(entry, dict) or not isinstance(entry.get("run"), str) or "kind" not in entry:
                raise RecordingError(f"{path}:{number}: an entry needs 'kind' and 'run' — re-record the file")
            entries.append(entry)
        return cls(path, entries)

    def append(self, kind: str, run: str, **fields: Any) -> None:
        entry = {"kind": kind, "run": run, **fields}
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True, default=str)
        with self._lock:
            self.entries.append(entry)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")

    def runs(self) -> list[str]:
        return list(dict.fromkeys(e["run"] for e in self.entries))

    def outcomes(self) -> dict[str, dict[str, Any]]:
        """The last outcome noted for each run (the harness notes one per case)."""
        return {e["run"]: e["outcome"] for e in self.entries if e["kind"] == "outcome"}

    def find(self, kind: str, run: str, step: str, tool: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """The entry of this call at this step; else the same call at another step of the run
        (a changed route may reach it by another node)."""
        same = [e for e in self._of(kind, run) if e["tool"] == tool and e["args"] == args]
        at_step = [e for e in same if e["step"] == step]
        found = at_step or same
        return found[0] if found else None

    def _of(self, kind: str, run: str) -> Iterator[dict[str, Any]]:
        return (e for e in self.entries if e["kind"] == kind and e["run"] == run)


class _Wrapped(ToolRegistry):
    """A registry of the inner registry's adapters, each with its ``fn`` and ``resource`` wrapped."""

    def __init__(self, inner: ToolRegistry, recording: Recording, run_key: RunKey) -> None:
        self.inner, self.recording, self.run_key = inner, recording, run_key
        super().__init__(self._wrap(adapter) for adapter in inner.values())

    def _wrap(self, adapter: ToolAdapter[Any, Any]) -> ToolAdapter[Any, Any]:
        resource = adapter.resource
        if resource is None:
            return dataclasses.replace(adapter, fn=self._fn(adapter))
        return dataclasses.replace(adapter, fn=self._fn(adapter), resource=self._resource(adapter, resource))

    def _where(self, step_id: str) -> tuple[str, str]:
        run, step = split_step(step_id)
        return self.run_key(run), step

    def _fn(self, adapter: ToolAdapter[Any, Any]) -> Callable[[Any, ToolContext], Any]:
        raise NotImplementedError

    def _resource(self, adapter: ToolAdapter[Any, Any], resolve: Callable[[Any], Any]) -> Callable[[Any], Any]:
        raise NotImplementedError


async def _resolved(resolve: Callable[[Any], Any], args: Any) -> Resource:
    found = resolve(args)
    return await found if inspect.isawaitable(found) else found


class RecordingTools(_Wrapped):
    """The inner tools, live, with every call's output and every step's resource recorded.
    ``run_key`` maps a run ID to the name it is recorded under (the evaluation's case ID)."""

    def __init__(self, inner: ToolRegistry, recording: Recording, run_key: RunKey = str) -> None:
        super().__init__(inner, recording, run_key)

    def _fn(self, adapter: ToolAdapter[Any, Any]) -> Callable[[Any, ToolContext], Any]:
        async def fn(args: BaseModel, ctx: ToolContext) -> Any:
            run, step = self._where(ctx.step_id)
            at: dict[str, Any] = {"step": step, "tool": adapter.name, "args": _canonical(args)}
            try:
                result = await adapter.fn(args, ctx)
            except (ToolRejected, ToolInputInvalid) as exc:
                error = {"kind": type(exc).__name__, "message": str(exc)}
                self.recording.append("call", run, **at, effect=adapter.effect.value, error=error)
                raise
            output = adapter.output_model.model_validate(result).model_dump(mode="json")
            self.recording.append("call", run, **at, effect=adapter.effect.value, output=output)
            return result

        return fn

    def _resource(self, adapter: ToolAdapter[Any, Any], resolve: Callable[[Any], Any]) -> Callable[[Any], Any]:
        async def resource(args: BaseModel) -> Resource:
            found = await _resolved(resolve, args)
            if (step_id := current_step.get()) is not None:
                run, step = self._where(step_id)
                value = {"type": found.type, "id": found.id, "attributes": dict(found.attributes)}
                self.recording.append(
                    "resource",
                    run,
                    step=step,
                    tool=adapter.name,
                    args=_canonical(args),
                    resource=json.loads(json.dumps(value, default=str)),
                )
            return found

        return resource


class ReplayingTools(_Wrapped):
    """Answers every call from ``recording`` and performs no write. ``live_reads``: a read the
    recording lacks is read live instead of failing. ``missing`` lists what went live."""

    def __init__(
        self, inner: ToolRegistry, recording: Recording, run_key: RunKey = str, *, live_reads: bool = False
    ) -> None:
        self.live_reads = live_reads
        self.missing: list[str] = []
        super().__init__(inner, recording, run_key)

    def _fn(self, adapter: ToolAdapter[Any, Any]) -> Callable[[Any, ToolContext], Any]:
        async def fn(args: BaseModel, ctx: ToolContext) -> Any:
            run, step = self._where(ctx.step_id)
            entry = self.recording.find("call", run, step, adapter.name, _canonical(args))
            if entry is None:
                what = f"{adapter.name}({json.dumps(_canonical(args), ensure_ascii=False)}) at {run}/{step}"
                if adapter.effect is Effect.READ and self.live_reads:
                    self.missing.append(what)
                    return await adapter.fn(args, ctx)
                kind = "read" if adapter.effect is Effect.READ else "write"
                fix = "" if kind == "write" else " (or allow live reads)"
                raise NotRecorded(f"replay: the recording holds no {kind} {what} — record the run again{fix}")
            if error := entry.get("error"):
                raise REFUSALS.get(error["kind"], ToolRejected)(error["message"])
            return adapter.output_model.model_validate(entry["output"])

        return fn

    def _resource(self, adapter: ToolAdapter[Any, Any], resolve: Callable[[Any], Any]) -> Callable[[Any], Any]:
        async def resource(args: BaseModel) -> Resource:
            if (step_id := current_step.get()) is not None:
                run, step = self._where(step_id)
                if entry := self.recording.find("resource", run, step, adapter.name, _canonical(args)):
                    found = entry["resource"]
                    return Resource(found["type"], found["id"], found["attributes"])
            return await _resolved(resolve, args)  # resolving a resource only reads

        return resource
