"""How values cross into Temporal: Pydantic for types, the payload codec for secrecy.

One converter for every client, worker and replayer of a deployment; they must agree, or a
worker cannot read what a client wrote. :func:`connect` is the short way to a client for code
that starts and follows runs; a worker process passes
:class:`~chamberlain.workflows._plugin.ChamberlainPlugin` to ``Client.connect`` instead.
"""

from __future__ import annotations

from contextvars import ContextVar

from temporalio.api.failure.v1 import Failure
from temporalio.client import Client, ClientConfig, TLSConfig
from temporalio.common import HeaderCodecBehavior
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConverter
from temporalio.plugin import SimplePlugin

from chamberlain.workflows._codec import EncryptionCodec

STACK_TRACE_LIMIT = 600
"""Characters of an outermost stack trace kept in a failure (its innermost frames)."""

_NESTED: ContextVar[bool] = ContextVar("chamberlain_failure_nested", default=False)


class CompactFailureConverter(DefaultFailureConverter):
    """Failures small enough for Temporal to keep whole. The server replaces a retried
    activity's failure of over 2 KB by "Failure exceeds size limit", losing its type and its
    retry delay — which a model timeout chained through httpx and httpcore, with a stack trace
    at each level, easily reaches. So a failure keeps every cause's type and message but only
    the outermost stack trace, cut to its innermost frames; the worker's log has the whole."""

    encode = False

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=False)

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        nested = _NESTED.get()
        token = _NESTED.set(True)
        try:
            super().to_failure(exception, payload_converter, failure)  # the causes come back through here
        finally:
            _NESTED.reset(token)
        failure.stack_trace = "" if nested else failure.stack_trace[-STACK_TRACE_LIMIT:]
        if self.encode:
            attributes = {"message": failure.message, "stack_trace": failure.stack_trace}
            failure.encoded_attributes.CopyFrom(payload_converter.to_payloads([attributes])[0])
            failure.message, failure.stack_trace = "Encoded failure", ""


class EncodedCompactFailureConverter(CompactFailureConverter):
    """The same, with message and stack trace moved into a payload the codec encrypts."""

    encode = True


def data_converter(codec: PayloadCodec | None = None) -> DataConverter:
    """Pydantic payloads, encrypted by ``codec`` (default: the keys in ``CHAMBERLAIN_PAYLOAD_KEYS``,
    none when unset). With a codec, failure messages and stack traces are encoded too: an
    exception's text often quotes the data it failed on."""
    codec = codec or EncryptionCodec.from_env()
    return DataConverter(
        payload_converter_class=PydanticPayloadConverter,
        payload_codec=codec,
        failure_converter_class=EncodedCompactFailureConverter if codec else CompactFailureConverter,
    )


def header_behavior(converter: DataConverter) -> HeaderCodecBehavior:
    """Headers through the codec too when there is one: the gate's ticket names the resource
    and the principal a step acts on."""
    return HeaderCodecBehavior.CODEC if converter.payload_codec else HeaderCodecBehavior.NO_CODEC


async def connect(
    address: str, namespace: str = "default", *, tls: TLSConfig | bool = False, codec: PayloadCodec | None = None
) -> Client:
    """A client for ``address`` with the deployment's converter (see :func:`data_converter`)."""
    converter = data_converter(codec)
    return await Client.connect(
        address,
        namespace=namespace,
        tls=tls,
        data_converter=converter,
        header_codec_behavior=header_behavior(converter),
    )


class ConverterPlugin(SimplePlugin):
    """Just the deployment's converter and header behaviour, for a client built by someone
    else's factory (Temporal's time-skipping test environment, say): pass it as a plugin
    where :func:`connect` cannot be used."""

    def __init__(self, codec: PayloadCodec | None = None) -> None:
        self._converter = data_converter(codec)
        super().__init__("chamberlain.converter", data_converter=self._converter)

    def configure_client(self, config: ClientConfig) -> ClientConfig:
        config = super().configure_client(config)
        config["header_codec_behavior"] = header_behavior(config["data_converter"])
        return config
