"""What the agent thinks with: declarative graphs, their compiler, and the models they call."""

from agents.compiler import LocalExecutor, compile_to_langgraph, run_in_process
from agents.exceptions import (
    AgentError,
    ExpressionError,
    GraphSpecError,
    ModelCallError,
    ModelOutputInvalid,
    ModelRequestRejected,
    ModelUnavailable,
    SpecIssue,
    StepLimitExceeded,
)
from agents.loader import check_graph, load_graph, parse_graph
from agents.messages import Message
from agents.models import ModelRegistry, call_model
from agents.plan import GraphPlan, RunOutcome, StepOutcome
from agents.private_model import PrivateChatModel
from agents.scripted import ScriptedChatModel
from agents.spec import (
    ApprovalNode,
    Branch,
    EndNode,
    FieldType,
    GraphSpec,
    ModelNode,
    OutputField,
    RetrySpec,
    RouteNode,
    StateField,
    Tier,
    ToolNode,
)
from agents.steps import (
    ApprovalDecision,
    ApprovalRequest,
    ModelCall,
    ModelReply,
    StepContext,
    StepExecutor,
    TokenUsage,
    ToolCall,
    ToolReply,
)

__all__ = [
    "AgentError",
    "ApprovalDecision",
    "ApprovalNode",
    "ApprovalRequest",
    "Branch",
    "EndNode",
    "ExpressionError",
    "FieldType",
    "GraphPlan",
    "GraphSpec",
    "GraphSpecError",
    "LocalExecutor",
    "Message",
    "ModelCall",
    "ModelCallError",
    "ModelNode",
    "ModelOutputInvalid",
    "ModelRegistry",
    "ModelReply",
    "ModelRequestRejected",
    "ModelUnavailable",
    "OutputField",
    "PrivateChatModel",
    "RetrySpec",
    "RouteNode",
    "RunOutcome",
    "ScriptedChatModel",
    "SpecIssue",
    "StateField",
    "StepContext",
    "StepExecutor",
    "StepLimitExceeded",
    "StepOutcome",
    "Tier",
    "TokenUsage",
    "ToolCall",
    "ToolNode",
    "ToolReply",
    "call_model",
    "check_graph",
    "compile_to_langgraph",
    "load_graph",
    "parse_graph",
    "run_in_process",
]
