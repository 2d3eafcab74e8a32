"""Failures small enough that Temporal keeps them whole: the server replaces a retried
activity's failure of over 2 KB by "Failure exceeds size limit", losing its type and the
retry delay a model server asked for."""

from __future__ import annotations

import socket
import traceback
from collections.abc import Iterator
from datetime import timedelta

import pytest
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from chamberlain.agents import PrivateChatModel
from chamberlain.agents._exceptions import ModelUnavailable
from chamberlain.workflows import EncryptionCodec
from chamberlain.workflows._codec import new_key
from chamberlain.workflows._converter import data_converter

SERVER_LIMIT = 2048  # bytes: Temporal's limit for a retried activity's last failure


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A model server on loopback that accepts a request and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


async def model_timeout(base_url: str) -> ApplicationError:
    """What the model activity raises when the model server does not answer in time: the real
    chain, through the model client, httpx and httpcore, each level with its stack."""
    model = PrivateChatModel(base_url=base_url, model="edge", timeout=0.2)
    try:
        try:
            await model.ainvoke("hello")
        except ModelUnavailable as exc:
            raise ApplicationError(str(exc), type="ModelUnavailable", next_retry_delay=timedelta(seconds=3)) from exc
    except ApplicationError as error:
        return error
    raise AssertionError("the silent server answered")


@pytest.mark.parametrize("codec", [None, EncryptionCodec.parse(new_key("k1"))], ids=["plain", "encrypted"])
async def test_a_chained_model_timeout_fits_and_keeps_its_type_delay_and_messages(
    codec: EncryptionCodec | None, silent_server: str
) -> None:
    error = await model_timeout(silent_server)
    assert traceback_size(error) > SERVER_LIMIT  # whole, it would not fit
    converter = data_converter(codec)
    failure = Failure()
    await converter.encode_failure(error, failure)
    assert failure.ByteSize() < SERVER_LIMIT, failure.ByteSize()
    info = failure.application_failure_info
    assert info.type == "ModelUnavailable" and info.next_retry_delay.ToSeconds() == 3
    back = await converter.decode_failure(failure)
    chain = [back, back.__cause__, back.__cause__.__cause__ if back.__cause__ else None]
    messages = [str(e) for e in chain if e is not None]
    assert "timed out (ReadTimeout)" in messages[0] and "ReadTimeout" in type(chain[-1]).__name__ + messages[-1]
    assert back.__cause__ is not None and not back.__cause__.failure.stack_trace  # causes: no stack


def traceback_size(error: BaseException) -> int:
    """The characters of every stack trace in the chain, as the default converter would keep them."""
    size = 0
    while error is not None:
        size += len("".join(traceback.format_tb(error.__traceback__)))
        error = error.__cause__  # type: ignore[assignment]
    return size
