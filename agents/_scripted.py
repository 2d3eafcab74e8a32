"""A deterministic chat model that ships with the code, for tests and offline demos.

It answers from a function of the conversation (or a fixed list), records every call
it received — messages with their real types, and the keyword arguments such as the
``response_format`` — and reports token usage like a real server would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, PrivateAttr

Responder = Callable[[Sequence[BaseMessage], dict[str, Any]], "str | AIMessage"]


class ScriptedChatModel(BaseChatModel):
    """Answers with ``respond(messages, kwargs)``, or the next of ``replies``."""

    respond: Responder | None = None
    replies: list[str] = Field(default_factory=list)
    _calls: list[tuple[list[BaseMessage], dict[str, Any]]] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[tuple[list[BaseMessage], dict[str, Any]]]:
        return self._calls

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._calls.append((list(messages), kwargs))
        if self.respond is not None:
            answer = self.respond(messages, kwargs)
        else:
            answer = self.replies[(len(self._calls) - 1) % len(self.replies)]
        message = answer if isinstance(answer, AIMessage) else AIMessage(content=answer)
        prompt_tokens = sum(len(m.text) for m in messages) // 4 + 1
        message.usage_metadata = {
            "input_tokens": prompt_tokens,
            "output_tokens": len(message.text) // 4 + 1,
            "total_tokens": prompt_tokens + len(message.text) // 4 + 1,
        }
        return ChatResult(generations=[ChatGeneration(message=message)])
