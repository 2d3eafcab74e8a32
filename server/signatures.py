"""Webhook signatures: HMAC-SHA256 over the raw body, compared in constant time.

Two schemes cover the senders that matter: a plain HMAC of the body in a header, hex or
base64 (GitHub's ``X-Hub-Signature-256: sha256=…``, Shopify's ``X-Shopify-Hmac-Sha256``),
and Stripe's timestamped ``t=…,v1=…`` over ``"{t}.{body}"`` with a tolerance window
against replays. Any of several secrets may match, so a secret can be rotated without
downtime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Literal

Scheme = Literal["hmac-sha256", "stripe"]
Encoding = Literal["hex", "base64"]


class SignatureError(Exception):
    """Why a request is not authentic; safe to show (it never contains a secret)."""


def _digest(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def _encode(digest: bytes, encoding: Encoding) -> str:
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def sign(
    secret: bytes,
    body: bytes,
    *,
    scheme: Scheme,
    encoding: Encoding = "hex",
    prefix: str = "",
    timestamp: int | None = None,
) -> str:
    """The header value a sender would put on ``body``."""
    if scheme == "stripe":
        t = int(time.time()) if timestamp is None else timestamp
        return f"t={t},v1={_digest(secret, f'{t}.'.encode() + body).hex()}"
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
) -> None:
    """Raise :class:`SignatureError` unless ``header`` signs ``body`` with one of ``secrets``."""
    if not header:
        raise SignatureError("missing signature")
    if scheme == "stripe":
        _verify_stripe(secrets, body, header, tolerance, time.time() if now is None else now)
        return
    if not header.startswith(prefix):
        raise SignatureError("malformed signature")
    given = header[len(prefix) :].strip()
    if not any(hmac.compare_digest(given.encode(), _encode(_digest(s, body), encoding).encode()) for s in secrets):
        raise SignatureError("bad signature")


def _verify_stripe(secrets: Sequence[bytes], body: bytes, header: str, tolerance: float, now: float) -> None:
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        raise SignatureError("malformed signature: no timestamp") from None
    candidates = parts.get("v1", [])
    signed = f"{timestamp}.".encode() + body
    expected = [_digest(s, signed).hex().encode() for s in secrets]
    if not any(hmac.compare_digest(c.encode(), e) for c in candidates for e in expected):
        raise SignatureError("bad signature")
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"stale timestamp: {abs(now - timestamp):.0f}s from now, tolerance {tolerance:.0f}s")
