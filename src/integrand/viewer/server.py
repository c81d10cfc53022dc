"""The viewer's HTTP hardening: security headers on every response, no 500 without them, and a
deadline for reading request headers.

- :class:`SecurityHeaders` is a plain ASGI middleware, so it also sees responses that other layers
  build (404s from routing, 400s from the Host check, 422s from validation) and turns an exception
  that escapes the app into a JSON 500 that carries the same headers. Starlette's own last-resort
  500 is sent from outside every user middleware and would lack them.
- uvicorn's ``timeout_keep_alive`` only starts after a response, and ``h11_max_incomplete_event_size``
  bounds the size of a request head, not the time it takes to arrive: a client that sends half a
  header line and waits holds the connection for ever. :func:`header_timeout_protocol` adds that
  deadline to uvicorn's h11 protocol: from the first moment a connection waits for a request head
  until the head is complete, at most ``seconds`` pass (trickling bytes does not extend it), then the
  server answers 408 and closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable, MutableMapping

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
FIXED_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
HEADER_TIMEOUT = 10.0  # seconds to receive a complete request head
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open (uvicorn's timeout_keep_alive)
MAX_HEAD_BYTES = 16 * 1024  # largest request head (uvicorn's h11_max_incomplete_event_size)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("integrand.viewer")


def security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with the fixed security headers set and the page CSP added unless one is present."""
    fixed = {k.lower().encode("latin-1") for k in FIXED_HEADERS}
    out = [(k, v) for k, v in headers if k.lower() not in fixed]
    if not any(k.lower() == b"content-security-policy" for k, _ in out):
        out.append((b"content-security-policy", PAGE_CSP.encode("latin-1")))
    out.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in FIXED_HEADERS.items())
    return out


class SecurityHeaders:
    """ASGI middleware: every HTTP response gets the security headers; an escaping exception becomes a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = security_headers(list(message.get("headers", [])))
            await send(message)

        try:
            await self.app(scope, receive, secured)
        except Exception:
            log.exception("integrand viewer: internal error on %s", scope.get("path", "?"))
            if started:  # the status line is gone; all that is left is to cut the response short
                raise
            body = json.dumps({"detail": "internal error"}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 500, "headers": security_headers(headers)})
            await send({"type": "http.response.body", "body": body})


def _timeout_response() -> bytes:
    head = [b"HTTP/1.1 408 Request Timeout", b"content-length: 0", b"connection: close"]
    head += [k + b": " + v for k, v in security_headers([])]
    return b"\r\n".join(head) + b"\r\n\r\n"


def header_timeout_protocol(seconds: float = HEADER_TIMEOUT) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline of ``seconds`` for each request head (see the module doc)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        header_timeout = seconds
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:
                self._arm()  # a head is (partly) on its way: the deadline runs from its first byte
            else:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is None and not self.transport.is_closing():
                self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.write(_timeout_response())
                self.transport.close()

    return HeaderTimeoutProtocol


def make_server(app: Any, *, host: str, port: int, header_timeout: float = HEADER_TIMEOUT) -> Any:
    """A ``uvicorn.Server`` for ``app`` with the bounded header read, keep-alive and head size."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=header_timeout_protocol(header_timeout),
        timeout_keep_alive=KEEP_ALIVE,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )
    return uvicorn.Server(config)
