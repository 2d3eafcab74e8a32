"""An MkDocs hook that writes the reference pages from the code at every build, so they can
never disagree with it: the command line (walking the typer app), the configuration (the
settings model and every option's environment variable), the graph schema (the JSON schema
of a graph file) and the public Python API (each layer's ``__all__`` and docstrings)."""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

import typer
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

LAYERS = ("chamberlain.agents", "chamberlain.tools", "chamberlain.workflows")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for name, text in pages().items():
        files.append(File.generated(config, f"reference/{name}", content=text))
    return files


def pages() -> dict[str, str]:
    return {
        "cli.md": cli_page(),
        "configuration.md": configuration_page(),
        "graph-schema.md": schema_page(),
        "python-api.md": api_page(),
    }


def _first_paragraph(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "").split("\n\n")[0]
    return " ".join(text.split())


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


# -- the command line ----------------------------------------------------------------------------


Command = Any  # typer's vendored click.Command: walked by duck typing


def _is_option(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "option"


def _commands(command: Command, path: list[str]) -> list[tuple[list[str], Command]]:
    found = [(path, command)]
    if hasattr(command, "commands"):
        for name in sorted(command.commands):
            found += _commands(command.commands[name], [*path, name])
    return found


def cli_page() -> str:
    from chamberlain.server._cli import app

    root = typer.main.get_command(app)
    lines = ["# Command line", "", "Generated from the `chamberlain` command (`chamberlain COMMAND --help`).", ""]
    for path, command in _commands(root, ["chamberlain"]):
        if hasattr(command, "commands") and len(path) > 1:
            lines += [f"## `{' '.join(path)}`", "", _first_paragraph(command.help), ""]
            continue
        heading = "#" * min(len(path) + 1, 3)
        lines += [f"{heading} `{' '.join(path)}`", "", inspect.cleandoc(command.help or "").replace("\n", " "), ""]
        with typer.Context(command, info_name=" ".join(path)) as ctx:
            lines += ["```text", ctx.command.get_usage(ctx), "```", ""]
            rows = [_param_row(p, ctx) for p in command.params if not getattr(p, "hidden", False)]
        rows = [r for r in rows if r]
        if rows:
            lines += ["| argument or option | environment | default | help |", "| --- | --- | --- | --- |", *rows, ""]
    return "\n".join(lines)


def _param_row(param: Any, ctx: typer.Context) -> str:
    if param.name in {"help", "install_completion", "show_completion"}:
        return ""
    option = _is_option(param)
    names = " / ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts]) if option else f"`{param.name.upper()}`"
    env = f"`{param.envvar}`" if option and param.envvar else ""
    default = param.get_default(ctx, call=False)
    shown = "" if default in (None, (), [], "") or callable(default) else f"`{default}`"
    help_text = getattr(param, "help", None) or ""
    return f"| {names} | {env} | {_escape(shown)} | {_escape(help_text)} |"


# -- configuration -------------------------------------------------------------------------------


def configuration_page() -> str:
    from chamberlain.agents._embedded import EMBEDDED_MODEL
    from chamberlain.server._cli import app
    from chamberlain.server._settings import ServerSettings
    from chamberlain.workflows._audit import KEY_VARIABLE
    from chamberlain.workflows._codec import PAYLOAD_KEYS_ENV
    from chamberlain.workflows._gate import GRANT_SECRET_ENV, MIN_SECRET_LENGTH

    prefix = ServerSettings.model_config.get("env_prefix", "")
    lines = [
        "# Configuration",
        "",
        "Generated from the code. The HTTP server, `chamberlain dev` and the audit commands read one",
        f"settings object, `ServerSettings`, from `{prefix}*` environment variables.",
        " ".join(inspect.cleandoc(ServerSettings.__doc__ or "").split()),
        "",
        "| variable | default |",
        "| --- | --- |",
    ]
    for name, field in ServerSettings.model_fields.items():
        default = "" if field.default is None else f"`{field.default}`"
        lines.append(f"| `{prefix}{name.upper()}` | {default} |")
    lines += [
        "",
        "## Keys and secrets",
        "",
        "| variable | read by | what |",
        "| --- | --- | --- |",
        f"| `{GRANT_SECRET_ENV}` | workers, `chamberlain worker` | the key the permission gate signs step tickets "
        f"with; every worker of a deployment shares it; at least {MIN_SECRET_LENGTH} characters |",
        f"| `{PAYLOAD_KEYS_ENV}` | every client, worker and the HTTP server | `keyid:base64key,...`: AES-256-GCM "
        "keys for payloads in Temporal; the first encrypts, all decrypt |",
        f"| `{KEY_VARIABLE}` | the audit log | the secret audit checkpoints are signed with |",
        "| `CHAMBERLAIN_EMBEDDED_URL` | apps' `models()` | the embedded model's URL "
        f"({EMBEDDED_MODEL}); set by `chamberlain dev` |",
        "",
        "## Command-line options read from the environment",
        "",
        "| variable | options |",
        "| --- | --- |",
    ]
    by_env: dict[str, set[str]] = {}
    for path, command in _commands(typer.main.get_command(app), ["chamberlain"]):
        for param in command.params:
            if _is_option(param) and isinstance(param.envvar, str):
                by_env.setdefault(param.envvar, set()).add(f"`{' '.join(path)} {param.opts[0]}`")
    lines += [f"| `{env}` | {', '.join(sorted(uses))} |" for env, uses in sorted(by_env.items())]
    return "\n".join(lines) + "\n"


# -- the graph schema ----------------------------------------------------------------------------


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map to {_type(prop['additionalProperties'])}"
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def schema_page() -> str:
    from chamberlain.agents._schema import graph_json_schema

    schema = graph_json_schema()
    definitions = {"GraphSpec": schema["$defs"]["GraphSpec"], **schema["$defs"]}
    lines = [
        "# Graph schema",
        "",
        "Generated from the graph model (`chamberlain graph schema` prints it as JSON Schema; graph files",
        "name it on their first line, `# yaml-language-server: $schema=...`, for editor completion).",
        "A graph file is a [GraphSpec](#graphspec).",
        "",
    ]
    for name, definition in definitions.items():
        lines += [f"## {name}", "", _escape(_first_paragraph(definition.get("description"))), ""]
        if "enum" in definition:
            lines += ["One of " + ", ".join(f"`{v}`" for v in definition["enum"]) + ".", ""]
            continue
        required = set(definition.get("required", []))
        lines += ["| key | type | required | default | description |", "| --- | --- | --- | --- | --- |"]
        for key, prop in definition.get("properties", {}).items():
            default = f"`{json.dumps(prop['default'], ensure_ascii=False)}`" if "default" in prop else ""
            description = _escape(_first_paragraph(prop.get("description")))
            needed = "yes" if key in required else ""
            lines.append(f"| `{key}` | {_type(prop)} | {needed} | {_escape(default)} | {description} |")
        lines.append("")
    return "\n".join(lines)


# -- the Python API ------------------------------------------------------------------------------


def _signature(value: Any) -> str:
    try:
        return str(inspect.signature(value))
    except (TypeError, ValueError):
        return ""


def api_page() -> str:
    lines = [
        "# Python API",
        "",
        "Generated from each layer's `__all__` and docstrings: these names are the public surface",
        "(`tests/test_exported_members.py` pins them).",
        "",
    ]
    for layer in LAYERS:
        module = importlib.import_module(layer)
        lines += [f"## `{layer}`", "", _first_paragraph(module.__doc__), ""]
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value):
                kind, shown = "class", f"{name}{_signature(value)}"
            elif callable(value):
                kind, shown = "function", f"{name}{_signature(value)}"
            else:
                kind, shown = "constant", f"{name} = {value!r}"
            doc = _first_paragraph(value.__doc__) if kind != "constant" else ""
            lines += [f"### `{name}`", "", f"*{kind}*", "", "```python", shown, "```", "", doc, ""]
    return "\n".join(lines)
