"""Webhook signatures: HMAC-SHA256 over the raw body, compared in constant time.

Three schemes cover the senders that matter:

- ``hmac-sha256``: a plain HMAC of the body in one header, hex or base64 (GitHub's
  ``X-Hub-Signature-256: sha256=…``, Shopify's ``X-Shopify-Hmac-Sha256``). It signs the body
  only: an event ID must come from the body, never from another header.
- ``stripe``: ``t=…,v1=…`` over ``"{t}.{body}"``, with a tolerance window against replays.
- ``standard-webhooks`` (standardwebhooks.com; Svix and others): ``webhook-signature:
  v1,<base64>`` over ``"{webhook-id}.{webhook-timestamp}.{body}"`` — the event ID header is
  signed, and the timestamp has the same tolerance. A ``whsec_`` secret is base64 after
  the prefix, as the specification says.

Any of several secrets may match, so a secret can be rotated without downtime.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Literal

Scheme = Literal["hmac-sha256", "stripe", "standard-webhooks"]
Encoding = Literal["hex", "base64"]
_TIMESTAMP_DIGITS = 12  # seconds since 1970 fit in 11 digits until the year 5138


class SignatureError(Exception):
    """Why a request is not authentic; safe to show (it never contains a secret)."""


def _digest(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def _encode(digest: bytes, encoding: Encoding) -> str:
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def _standard_key(secret: bytes) -> bytes:
    if not secret.startswith(b"whsec_"):
        return secret
    try:
        return base64.b64decode(secret[len(b"whsec_") :], validate=True)
    except binascii.Error:
        raise ValueError("a whsec_ secret must be base64 after the prefix") from None


def _standard_message(event_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{event_id}.{timestamp}.".encode() + body


def sign(
    secret: bytes,
    body: bytes,
    *,
    scheme: Scheme,
    encoding: Encoding = "hex",
    prefix: str = "",
    timestamp: int | None = None,
    event_id: str | None = None,
) -> str:
    """The signature header's value a sender would put on ``body``. ``standard-webhooks``
    signs ``event_id`` and ``timestamp`` too: the sender sends both in their own headers."""
    t = int(time.time()) if timestamp is None else timestamp
    if scheme == "stripe":
        return f"t={t},v1={_digest(secret, f'{t}.'.encode() + body).hex()}"
    if scheme == "standard-webhooks":
        if event_id is None or timestamp is None:
            raise ValueError("standard-webhooks signs the event ID and the timestamp: pass both")
        return "v1," + base64.b64encode(_digest(_standard_key(secret), _standard_message(event_id, t, body))).decode()
    return prefix + _encode(_digest(secret, body), encoding)


def verify(
    secrets: Sequence[bytes],
    body: bytes,
    header: str | None,
    *,
    scheme: Scheme,
    encoding: Encoding = "hex",
    prefix: str = "",
    tolerance: float = 300.0,
    now: float | None = None,
    event_id: str | None = None,
    timestamp: str | None = None,
) -> None:
    """Raise :class:`SignatureError` unless ``header`` signs ``body`` with one of ``secrets``
    (and, for ``standard-webhooks``, the ``event_id`` and ``timestamp`` headers' values)."""
    if not header:
        raise SignatureError("missing signature")
    now = time.time() if now is None else now
    if scheme == "stripe":
        _verify_stripe(secrets, body, header, tolerance, now)
        return
    if scheme == "standard-webhooks":
        _verify_standard(secrets, body, header, event_id, timestamp, tolerance, now)
        return
    if not header.startswith(prefix):
        raise SignatureError("malformed signature")
    given = header[len(prefix) :].strip()
    if not any(hmac.compare_digest(given.encode(), _encode(_digest(s, body), encoding).encode()) for s in secrets):
        raise SignatureError("bad signature")


def _timestamp(value: str | None) -> int:
    value = (value or "").strip()
    if not (value.isascii() and value.isdigit() and len(value) <= _TIMESTAMP_DIGITS):
        raise SignatureError("malformed signature: no timestamp")
    return int(value)


def _check_age(timestamp: int, tolerance: float, now: float) -> None:
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"stale timestamp: {abs(now - timestamp):.0f}s from now, tolerance {tolerance:.0f}s")


def _verify_stripe(secrets: Sequence[bytes], body: bytes, header: str, tolerance: float, now: float) -> None:
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    timestamp = _timestamp(parts.get("t", [None])[0])
    candidates = parts.get("v1", [])
    signed = f"{timestamp}.".encode() + body
    expected = [_digest(s, signed).hex().encode() for s in secrets]
    if not any(hmac.compare_digest(c.encode(), e) for c in candidates for e in expected):
        raise SignatureError("bad signature")
    _check_age(timestamp, tolerance, now)


def _verify_standard(
    secrets: Sequence[bytes],
    body: bytes,
    header: str,
    event_id: str | None,
    timestamp_header: str | None,
    tolerance: float,
    now: float,
) -> None:
    if not event_id:
        raise SignatureError("missing webhook-id (standard-webhooks signs it)")
    timestamp = _timestamp(timestamp_header)
    message = _standard_message(event_id, timestamp, body)
    expected = [base64.b64encode(_digest(_standard_key(s), message)) for s in secrets]
    candidates = [c.partition(",")[2].encode() for c in header.split() if c.startswith("v1,")]
    if not any(hmac.compare_digest(c, e) for c in candidates for e in expected):
        raise SignatureError("bad signature")
    _check_age(timestamp, tolerance, now)
