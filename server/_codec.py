"""The remote codec endpoint: the Temporal UI shows decrypted payloads to signed-in operators.

Temporal's UI (``temporal server start-dev --ui-codec-endpoint <this server>/codec``, or the
UI's "Data Encoder" setting) posts the payloads it is about to show to ``/codec/decode`` —
``{"payloads": [{"metadata": {...}, "data": "<base64>"}]}``, Temporal's protobuf JSON — and
shows what comes back. Only a bearer token of a user with the ``operator`` role gets plaintext;
anyone else gets 401/403 and the UI keeps showing ciphertext. Payloads that were never
encrypted (runs from before keys were configured) come back unchanged.

The UI calls from its own origin, so ``ui_origins`` lists the origins allowed by CORS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from temporalio.api.common.v1 import Payloads

from chamberlain.server._auth import CurrentUser
from chamberlain.workflows._codec import EncryptionCodec, PayloadDecodeError

OPERATOR_ROLE = "operator"
DEV_UI_ORIGINS = ("http://127.0.0.1:8233", "http://localhost:8233")  # `chamberlain dev`'s Temporal UI


def codec_router(codec: EncryptionCodec, *, ui_origins: Sequence[str] = DEV_UI_ORIGINS) -> APIRouter:
    router = APIRouter(prefix="/codec", tags=["codec"])

    def cors(request: Request, response: Response) -> None:
        origin = request.headers.get("origin")
        if origin and origin in ui_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Namespace"
            response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response.headers["Vary"] = "Origin"

    @router.options("/decode", include_in_schema=False)
    async def preflight(request: Request) -> Response:
        """The browser's CORS preflight carries no credentials; it learns only what may be sent."""
        response = Response(status_code=204)
        cors(request, response)
        return response

    @router.post("/decode")
    async def decode(request: Request, response: Response, user: CurrentUser) -> dict[str, Any]:
        """Decrypt payloads for display, for operators only."""
        cors(request, response)
        if OPERATOR_ROLE not in user.roles:
            raise HTTPException(403, f"decoding payloads needs the {OPERATOR_ROLE!r} role; {user.id} lacks it")
        expected = 'body: expected {"payloads": [...]} in Temporal\'s JSON form'
        try:
            body = await request.json()
        except ValueError as exc:
            raise HTTPException(400, f"{expected} ({exc})") from exc
        if not isinstance(body, dict):
            raise HTTPException(400, f"{expected}, not a JSON {type(body).__name__}")
        try:
            payloads = ParseDict(body, Payloads())
        except (ParseError, ValueError) as exc:
            raise HTTPException(400, f"{expected} ({exc})") from exc
        try:
            decoded = [codec.open(payload, plaintext_ok=True) for payload in payloads.payloads]
        except PayloadDecodeError as exc:
            raise HTTPException(400, str(exc)) from exc
        return MessageToDict(Payloads(payloads=decoded))

    return router
