"""fer-serve's request limits: an ASGI middleware that bounds a request body's size and the
pauses while it arrives, refusing with 413 or 408 before anything larger is buffered."""

from __future__ import annotations

import asyncio


def _error_messages(status: int, detail: str, headers: dict[str, str] | None = None) -> list[dict]:
    import json

    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return [
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": body},
    ]


class _Refused(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class BodyLimit:
    """ASGI middleware: at most `max_bytes` of request body, and no pause longer than `idle_timeout`.

    A declared Content-Length over the limit is answered 413 at once, before the body is read;
    a body without one (chunked) is counted as it arrives and refused when it passes the limit,
    so nothing larger than the limit is ever buffered. Either way the connection is closed
    after the answer (the rest of the body is not read)."""

    def __init__(self, app, max_bytes: int, idle_timeout: float):
        self.app, self.max_bytes, self.idle_timeout = app, max_bytes, idle_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    for message in _error_messages(400, "Content-Length is not a number", {"connection": "close"}):
                        await send(message)
                    return
        if length is not None and length > self.max_bytes:
            for message in _error_messages(413, self._too_large(length), {"connection": "close"}):
                await send(message)
            return
        received, done, refused, started = 0, False, None, False

        async def limited_receive():
            nonlocal received, done, refused
            if done:  # after the body: a disconnect, whenever it comes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.idle_timeout)
            except asyncio.TimeoutError:
                refused = _Refused(408, f"the request body stopped arriving for {self.idle_timeout:g} s")
                raise refused from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                done = not message.get("more_body", False)
                if received > self.max_bytes:
                    refused = _Refused(413, self._too_large(None))
                    raise refused
            return message

        async def guarded_send(message):
            nonlocal started
            if refused is not None and not started:  # whatever the app made of the refusal: ours instead
                if message["type"] == "http.response.start":
                    started = True
                    for m in _error_messages(refused.status, refused.detail, {"connection": "close"}):
                        await send(m)
                return
            if refused is not None:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _Refused:
            if not started:
                started = True
                for m in _error_messages(refused.status, refused.detail, {"connection": "close"}):
                    await send(m)

    def _too_large(self, length: int | None) -> str:
        size = f"{length:,} bytes" if length is not None else "more than the limit"
        return f"request body too large ({size}); the limit is {self.max_bytes:,} bytes ({self.max_bytes / 2**20:g} MB)"
