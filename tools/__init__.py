"""What the agent acts with: the adapter contract, the registry graphs resolve tools in, and the
bridges that bring LangChain and MCP tools under the same contract (and the same gate)."""

from chamberlain.tools._adapter import Effect, Resource, ToolAdapter, ToolContext, tool
from chamberlain.tools._bridges import McpDeclaration, McpServer, from_langchain, mcp_tools, to_langchain
from chamberlain.tools._business import business_tools, crm_backend, erp_backend
from chamberlain.tools._exceptions import ToolError, ToolInputInvalid, ToolRejected, ToolUnavailable, UnknownTool
from chamberlain.tools._registry import ToolRegistry
from chamberlain.tools._seed import REFERENCE_DAY, SINGLES_DAY, seed

__all__ = [
    "REFERENCE_DAY",
    "SINGLES_DAY",
    "Effect",
    "McpDeclaration",
    "McpServer",
    "Resource",
    "ToolAdapter",
    "ToolContext",
    "ToolError",
    "ToolInputInvalid",
    "ToolRegistry",
    "ToolRejected",
    "ToolUnavailable",
    "UnknownTool",
    "business_tools",
    "crm_backend",
    "erp_backend",
    "from_langchain",
    "mcp_tools",
    "seed",
    "to_langchain",
    "tool",
]
