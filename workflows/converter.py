"""One way to reach Temporal: the Pydantic data converter, so inputs and outputs stay typed."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter


async def connect(address: str, namespace: str = "default", *, tls: TLSConfig | bool = False) -> Client:
    """A client for ``address`` that (de)serializes with Pydantic."""
    return await Client.connect(address, namespace=namespace, tls=tls, data_converter=pydantic_data_converter)
