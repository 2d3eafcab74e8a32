"""Tools from elsewhere, under the same contract and the same permission gate.

- :func:`from_langchain`: any LangChain ``BaseTool``, with the action, effect and labels
  you declare for it (LangChain tools carry none). A call's step ID and idempotency key reach
  the tool in its run config's ``metadata`` (a tool taking ``config: RunnableConfig`` reads them).
- :func:`to_langchain`: an adapter as a LangChain ``StructuredTool``, for LangChain agents.
- :func:`mcp_tools`: the tools of an MCP server over stdio. Only tools you declare are
  imported, so every imported tool has an action and an effect for the gate to check. A model
  choosing among them sees each one's input schema as the server declares it, and each call
  carries its step ID and idempotency key in the request's ``_meta`` (:data:`MCP_IDEMPOTENCY_KEY`,
  :data:`MCP_STEP_ID`), so a server that honours them answers a retried write with its first result.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, cast

from pydantic import BaseModel, ConfigDict

from chamberlain.tools._adapter import Effect, ToolAdapter, ToolContext
from chamberlain.tools._exceptions import ToolInputInvalid, ToolRejected, ToolUnavailable

if TYPE_CHECKING:  # imported where used: ``chamberlain.tools`` stays light for those without bridges
    from langchain_core.tools import BaseTool, StructuredTool
    from mcp.client.stdio import StdioServerParameters


class ToolResult(BaseModel):
    """What a foreign tool returned: its text, and its structured content when it has one."""

    text: str = ""
    data: Any = None


MCP_IDEMPOTENCY_KEY = "chamberlain/idempotency-key"
MCP_STEP_ID = "chamberlain/step-id"


class _OpenArguments(BaseModel):
    model_config = ConfigDict(extra="allow")


class _McpArguments(_OpenArguments):
    """An MCP tool's arguments: taken as they come (the server's JSON schema checks them when the
    call runs), described to a model by the server's own schema rather than an empty object."""

    mcp_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return dict(cls.mcp_schema)


def from_langchain(
    tool: BaseTool,
    *,
    action: str,
    effect: Effect = Effect.READ,
    labels: Mapping[str, tuple[str, ...]] | None = None,
    name: str | None = None,
) -> ToolAdapter[Any, ToolResult]:
    """Register a LangChain tool; its arguments are validated by its own schema."""
    schema = tool.get_input_schema()

    async def run(args: BaseModel, ctx: ToolContext) -> ToolResult:
        metadata = {"step_id": ctx.step_id, "idempotency_key": ctx.idempotency_key}
        result = await tool.ainvoke(args.model_dump(), config={"metadata": metadata})
        return ToolResult(
            text=result if isinstance(result, str) else "", data=None if isinstance(result, str) else result
        )

    return ToolAdapter(
        name=name or tool.name,
        description=tool.description,
        input_model=schema,
        output_model=ToolResult,
        fn=run,
        effect=effect,
        action=action,
        labels=dict(labels or {}),
    )


def to_langchain(adapter: ToolAdapter[Any, Any]) -> StructuredTool:
    """The adapter as a LangChain tool. Outside a durable step there is no step ID, so each
    call gets a fresh idempotency key: the caller is responsible for not repeating writes."""
    from langchain_core.tools import StructuredTool

    async def run(**kwargs: Any) -> dict[str, Any]:
        key = f"langchain/{adapter.name}/{uuid.uuid4()}"
        return await adapter.invoke(kwargs, ToolContext(step_id=key, idempotency_key=key))

    return StructuredTool.from_function(
        coroutine=run,
        name=adapter.name.replace(".", "_"),
        description=adapter.description,
        args_schema=adapter.input_model,
    )


@dataclass(frozen=True)
class McpDeclaration:
    """What the gate must know about an MCP tool, which the MCP server does not say."""

    action: str
    effect: Effect = Effect.READ
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class McpServer:
    command: str
    args: Sequence[str] = ()
    env: Mapping[str, str] | None = None

    def parameters(self) -> StdioServerParameters:
        from mcp.client.stdio import StdioServerParameters

        return StdioServerParameters(
            command=self.command, args=list(self.args), env=dict(self.env) if self.env else None
        )


async def mcp_tools(
    server: McpServer, declarations: Mapping[str, McpDeclaration], prefix: str = "mcp."
) -> list[ToolAdapter[Any, ToolResult]]:
    """Adapters for the declared tools of an MCP server (stdio); an undeclared tool is not imported,
    a declared one the server lacks is an error."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import stdio_client

    async with stdio_client(server.parameters()) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = {t.name: t for t in (await session.list_tools()).tools}
    missing = sorted(set(declarations) - set(listed))
    if missing:
        raise ValueError(
            f"MCP server {server.command} has no tool(s) {', '.join(missing)} (it has {', '.join(sorted(listed))})"
        )
    return [_mcp_adapter(server, listed[name], declared, prefix) for name, declared in declarations.items()]


def _mcp_adapter(server: McpServer, listed: Any, declared: McpDeclaration, prefix: str) -> ToolAdapter[Any, ToolResult]:
    import jsonschema
    from mcp.client.session import ClientSession
    from mcp.client.stdio import stdio_client
    from mcp.types import RequestParamsMeta

    schema: dict[str, Any] = listed.input_schema or {"type": "object"}
    validator = jsonschema.Draft202012Validator(schema)
    model = type(f"Mcp_{listed.name}", (_McpArguments,), {"mcp_schema": schema})

    async def run(args: BaseModel, ctx: ToolContext) -> ToolResult:
        arguments = args.model_dump()
        problems = [
            f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}"
            for e in validator.iter_errors(arguments)
        ]
        if problems:
            raise ToolInputInvalid(f"{prefix}{listed.name}: " + "; ".join(problems))
        try:
            async with stdio_client(server.parameters()) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                meta = cast(RequestParamsMeta, {MCP_IDEMPOTENCY_KEY: ctx.idempotency_key, MCP_STEP_ID: ctx.step_id})
                result = await session.call_tool(listed.name, arguments, meta=meta)
        except OSError as exc:
            raise ToolUnavailable(f"MCP server {server.command} could not be started: {exc}") from exc
        text = "\n".join(getattr(part, "text", "") for part in result.content)
        if result.is_error:
            raise ToolRejected(f"{prefix}{listed.name}: {text}")
        return ToolResult(text=text, data=result.structured_content)

    return ToolAdapter(
        name=f"{prefix}{listed.name}",
        description=listed.description or listed.name,
        input_model=model,
        output_model=ToolResult,
        fn=run,
        effect=declared.effect,
        action=declared.action,
        labels=dict(declared.labels),
    )
