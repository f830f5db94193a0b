"""Raw ASGI replies and bearer-token checks, shared by the endpoints that bypass Starlette's
request objects for speed (the report ingest and the event stream)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import msgspec
from starlette.types import Scope, Send

Headers = Iterable[tuple[bytes, bytes]]
JSON = (b"content-type", b"application/json")
CHALLENGE = ((b"www-authenticate", b"Bearer"),)


def error_body(message: str) -> bytes:
    return msgspec.json.encode({"error": message})


async def send_bytes(send: Send, status: int, body: bytes, headers: Headers = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", b"%d" % len(body)), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, message: str, headers: Headers = ()) -> None:
    await send_bytes(send, status, error_body(message), headers)


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class BearerToken:
    """Compares digests of the tokens, so the comparison takes the same time whatever the
    given token's length or content."""

    __slots__ = ("_digest",)

    def __init__(self, token: str) -> None:
        self._digest = hashlib.sha256(token.encode()).digest()

    def problem(self, scope: Scope) -> str | None:
        """Why the request is not authorised, or None when it is."""
        value = header(scope, b"authorization")
        scheme, _, given = (value or b"").partition(b" ")
        if value is None or scheme.lower() != b"bearer":
            return "this endpoint needs an Authorization: Bearer token"
        if not hmac.compare_digest(hashlib.sha256(given.strip()).digest(), self._digest):
            return "the bearer token is not valid"
        return None
