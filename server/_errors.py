"""What the command line says when something a user can fix goes wrong: one line naming the
file, field or flag, and the fix — never a traceback (``--debug`` shows it).

Commands raise :class:`CliError` where they know the context (which flag, which file);
:func:`explain` turns the remaining known errors of the layers underneath into such a line.
Anything it does not know is a bug, and keeps its traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml
from pydantic import ValidationError

from chamberlain.agents._exceptions import GraphSpecError, InputInvalid, ModelCallError, ModelOutputInvalid
from chamberlain.server._app import AppError
from chamberlain.server._sources import SourceError
from chamberlain.server._temporal import TemporalUnavailable
from chamberlain.workflows._audit import AuditLogError
from chamberlain.workflows._gate import GateNotConfigured


class CliError(Exception):
    """A mistake the user can fix; the message names what and how."""


@contextmanager
def reading(path: Path | str, what: str = "file") -> Iterator[None]:
    """Name ``path`` in the errors of reading it (a decode error alone does not say which file)."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise CliError(
            f"{path}: the {what} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}) "
            "— save it as UTF-8"
        ) from exc
    except IsADirectoryError as exc:
        raise CliError(f"{path}: is a folder — name the {what} itself") from exc


def explain(exc: BaseException) -> str | None:
    """One line for a known error, or ``None`` for a bug."""
    match exc:
        case CliError() | TemporalUnavailable() | AppError() | GateNotConfigured() | AuditLogError():
            return str(exc)
        case SourceError():
            return "; ".join(exc.problems)
        case GraphSpecError():
            return "; ".join(str(issue) for issue in exc.issues)
        case FileNotFoundError():
            return f"{exc.filename}: no such file (relative paths start at {os.getcwd()}) — check the path"
        case IsADirectoryError():
            return f"{exc.filename}: is a folder — name a file"
        case PermissionError():
            return f"{exc.filename}: permission denied — check the file's owner and mode"
        case NotADirectoryError():
            return f"{exc.filename}: is a file, not a folder — name a folder"
        case InputInvalid():
            return f"{exc} — fix --input"
        case ModelCallError() | ModelOutputInvalid() if "unreachable" in str(exc):
            return f"{exc} — start the model server (`chamberlain dev` starts the embedded one)"
        case ModelCallError() | ModelOutputInvalid():
            return str(exc)
        case KeyError() if "payload encoding" in str(exc):
            return (
                "a payload is encrypted — set CHAMBERLAIN_PAYLOAD_KEYS to the deployment's keys "
                "(`chamberlain dev` keeps its own in .chamberlain/payload-keys, read from there when unset)"
            )
        case UnicodeDecodeError():
            return f"a file is not UTF-8 text ({exc.reason} at offset {exc.start}) — save it as UTF-8"
        case yaml.MarkedYAMLError() if exc.problem_mark is not None:
            mark = exc.problem_mark
            return f"{mark.name}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {exc.problem} — fix the syntax there"
        case yaml.YAMLError():
            return f"invalid YAML: {exc}"
        case json.JSONDecodeError():
            return f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        case ValidationError():
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or exc.title
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            return f"{exc.title}: field {where}: {first['msg']}{more}"
        case ModuleNotFoundError():
            return (
                f"cannot import {exc.name!r} — check --app / CHAMBERLAIN_APP (a module path such as "
                "chamberlain.examples.quickstart.app; your own modules are found from the working directory)"
            )
        case httpx.ConnectError() | httpx.ConnectTimeout():
            return f"cannot reach {_url(exc)} — is `chamberlain serve` running? Check --url / CHAMBERLAIN_PUBLIC_URL"
        case httpx.TransportError():
            return f"HTTP request failed: {exc} — check --url / CHAMBERLAIN_PUBLIC_URL"
    return None


def _url(exc: httpx.RequestError) -> str:
    try:
        return str(exc.request.url)
    except RuntimeError:  # raised by httpx when the error carries no request
        return "the server"
