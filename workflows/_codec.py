"""Payloads encrypted before they reach Temporal: AES-GCM under named keys.

Temporal's history holds every input and output of a run — customer messages, CRM records —
and anyone with the Temporal UI or its database could read them. :class:`EncryptionCodec`
encrypts each payload in the client and the worker, so the server, its database and its UI
hold ciphertext; only processes with a key read it (workers, the HTTP API, and the codec
endpoint for signed-in operators). Failure messages are encrypted too (see
:func:`~chamberlain.workflows._converter.data_converter`).

Keys come from configuration, ``CHAMBERLAIN_PAYLOAD_KEYS=keyid:base64key,...`` (32-byte keys,
AES-256-GCM). The first key encrypts; every key decrypts, found by the key ID each payload
carries in its metadata. Rotating is: put a new key first, keep the old ones as long as any
history that needs them is kept. :func:`new_key` makes a key entry:
``python -c "from chamberlain.workflows._codec import new_key; print(new_key('k2'))"``.

Decoding refuses a payload that is not encrypted: with keys configured, a value that did not
come from a key holder (say, a signal sent from the Temporal UI) never reaches a workflow.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

PAYLOAD_KEYS_ENV = "CHAMBERLAIN_PAYLOAD_KEYS"
ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
_NONCE = 12
_TAG = 16  # AES-GCM's authentication tag, after the ciphertext
_KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class PayloadKeyError(ValueError):
    """The payload keys are misconfigured: a deployment mistake, so the process must not start."""


class PayloadDecodeError(ValueError):
    """A payload cannot be decrypted: unknown key, tampered ciphertext, or not encrypted at all."""


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over the serialized payload; the key ID is in the metadata and bound to the
    ciphertext as associated data, so a payload cannot be relabelled to another key."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise PayloadKeyError(f"no payload keys: set {PAYLOAD_KEYS_ENV}=keyid:base64key")
        for key_id, key in keys.items():
            if not _KEY_ID_PATTERN.fullmatch(key_id):
                raise PayloadKeyError(f"payload key ID {key_id!r}: use 1-64 letters, digits, '_', '.' or '-'")
            if len(key) != 32:
                raise PayloadKeyError(f"payload key {key_id!r} has {len(key)} bytes; AES-256 needs 32")
        self.key_id = next(iter(keys))
        self._keys = dict(keys)
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}

    @property
    def key_ids(self) -> list[str]:
        """The configured key IDs, the encrypting one first."""
        return list(self._ciphers)

    @classmethod
    def parse(cls, text: str, *, source: str = PAYLOAD_KEYS_ENV) -> EncryptionCodec:
        """Read ``keyid:base64key,...``; ``source`` names where the text came from in errors."""
        keys: dict[str, bytes] = {}
        for number, item in enumerate(text.replace("\n", ",").split(","), 1):
            item = item.strip()
            if not item:
                continue
            key_id, colon, encoded = item.partition(":")
            if not colon:
                raise PayloadKeyError(f"{source}, entry {number}: expected keyid:base64key, got no ':'")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error as exc:
                raise PayloadKeyError(f"{source}, entry {number} ({key_id!r}): the key is not base64 ({exc})") from exc
            if key_id in keys:
                raise PayloadKeyError(f"{source}, entry {number}: key ID {key_id!r} appears twice")
            keys[key_id.strip()] = key
        if not keys:
            raise PayloadKeyError(f"{source} is empty: expected keyid:base64key[,keyid:base64key...]")
        return cls(keys)

    @classmethod
    def from_env(cls) -> EncryptionCodec | None:
        """The codec ``CHAMBERLAIN_PAYLOAD_KEYS`` configures, or None when it is unset."""
        text = os.environ.get(PAYLOAD_KEYS_ENV)
        return cls.parse(text) if text is not None else None

    def __eq__(self, other: object) -> bool:
        """Two codecs are equal when they hold the same keys in the same order."""
        if not isinstance(other, EncryptionCodec):
            return NotImplemented
        return list(self._keys.items()) == list(other._keys.items())

    __hash__ = None  # type: ignore[assignment]

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(payload) for payload in payloads]

    def seal(self, payload: Payload) -> Payload:
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._ciphers[self.key_id].encrypt(nonce, payload.SerializeToString(), self.key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: self.key_id.encode()}, data=nonce + sealed)

    def open(self, payload: Payload, *, plaintext_ok: bool = False) -> Payload:
        """Decrypt ``payload``. One that is not encrypted is refused, unless ``plaintext_ok``
        (for display only: the codec endpoint shows histories from before encryption)."""
        if payload.metadata.get("encoding") != ENCODING:
            if plaintext_ok:
                return payload
            raise PayloadDecodeError(
                "a payload is not encrypted, but payload keys are configured: it did not come from a key holder"
            )
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecodeError(
                f"a payload is encrypted with key {key_id!r}, which is not configured: add it to {PAYLOAD_KEYS_ENV}"
            )
        if len(payload.data) < _NONCE + _TAG:
            raise PayloadDecodeError(
                f"a payload encrypted with key {key_id!r} holds {len(payload.data)} bytes, fewer than a nonce and"
                f" tag ({_NONCE + _TAG}): it is cut short or not a payload of ours"
            )
        try:
            plain = cipher.decrypt(payload.data[:_NONCE], payload.data[_NONCE:], key_id.encode())
        except InvalidTag as exc:
            raise PayloadDecodeError(f"a payload encrypted with key {key_id!r} failed authentication") from exc
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded


def new_key(key_id: str) -> str:
    """A fresh ``keyid:base64key`` entry, to put first in ``CHAMBERLAIN_PAYLOAD_KEYS``."""
    if not _KEY_ID_PATTERN.fullmatch(key_id):
        raise PayloadKeyError(f"payload key ID {key_id!r}: use 1-64 letters, digits, '_', '.' or '-'")
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def key_file(path: Path) -> str:
    """The keys stored in ``path``, created on first use (one fresh key, mode 0600) — the
    embedded dev stack's keys, kept in its data folder so its history stays readable."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(new_key("dev1") + "\n")
    if path.stat().st_mode & 0o077:
        raise PayloadKeyError(f"{path} is readable by other users: chmod 600 {path}")
    return path.read_text().strip()
