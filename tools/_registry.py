"""Adapters by name: graphs reference tools by name and the worker resolves them here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from chamberlain.tools._adapter import ToolAdapter, ToolContext
from chamberlain.tools._exceptions import UnknownTool


class ToolRegistry(Mapping[str, ToolAdapter[Any, Any]]):
    """An immutable-by-convention map of adapter name → adapter."""

    def __init__(self, adapters: Iterable[ToolAdapter[Any, Any]] = ()) -> None:
        self._adapters: dict[str, ToolAdapter[Any, Any]] = {}
        for adapter in adapters:
            self.register(adapter)

    def register(self, adapter: ToolAdapter[Any, Any]) -> ToolAdapter[Any, Any]:
        if adapter.name in self._adapters:
            raise ValueError(f"tool {adapter.name!r} is registered twice")
        self._adapters[adapter.name] = adapter
        return adapter

    def __getitem__(self, name: str) -> ToolAdapter[Any, Any]:
        try:
            return self._adapters[name]
        except KeyError:
            raise UnknownTool(
                f"no tool named {name!r} (known: {', '.join(sorted(self._adapters)) or 'none'})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._adapters

    def __iter__(self) -> Iterator[str]:
        return iter(self._adapters)

    def __len__(self) -> int:
        return len(self._adapters)

    async def invoke(self, name: str, args: Mapping[str, Any], context: ToolContext) -> dict[str, Any]:
        return await self[name].invoke(args, context)
