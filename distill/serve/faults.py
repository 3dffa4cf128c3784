"""`distillery serve --fault KIND[:RATE]`: injected failures, so clients are tested against a real
server misbehaving the way real ones do.

Kinds (each POST draws once, in the order given, from a seeded RNG; the first hit applies):
    429      Too Many Requests, with `Retry-After: <retry_after_s>`
    500      Internal Server Error (an OpenAI-shaped error body)
    slow     wait `delay_s` seconds, then answer normally (client timeouts)
    drop     start a 200 response, send part of the body, and close the connection
    garbage  200 with a body that is not JSON
RATE is a probability in (0, 1], default 1. GET routes (/v1/models, /health) are never faulted.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass

KINDS = ("429", "500", "slow", "drop", "garbage")


@dataclass(frozen=True)
class Fault:
    kind: str
    rate: float


def parse_faults(specs: list[str]) -> list[Fault]:
    faults = []
    for spec in specs:
        kind, _, rate = spec.partition(":")
        if kind not in KINDS:
            raise ValueError(f"--fault {spec}: unknown kind {kind!r}; use one of {list(KINDS)}")
        try:
            value = float(rate) if rate else 1.0
        except ValueError:
            raise ValueError(f"--fault {spec}: rate must be a number in (0, 1]") from None
        if not 0.0 < value <= 1.0:
            raise ValueError(f"--fault {spec}: rate must be in (0, 1], got {value}")
        faults.append(Fault(kind, value))
    return faults


class FaultInjector:
    """ASGI middleware around the app; `counts` says how many of each fault were injected."""

    def __init__(self, app, faults: list[Fault], *, seed: int = 0, delay_s: float = 5.0,
                 retry_after_s: float = 1.0):
        self.app, self.faults = app, faults
        self.rng = random.Random(seed)
        self.delay_s, self.retry_after_s = delay_s, retry_after_s
        self.counts: Counter = Counter()

    def _draw(self) -> str | None:
        for fault in self.faults:
            if self.rng.random() < fault.rate:
                return fault.kind
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not self.faults:
            return await self.app(scope, receive, send)
        kind = self._draw()
        if kind is None:
            return await self.app(scope, receive, send)
        self.counts[kind] += 1
        if kind == "slow":
            await asyncio.sleep(self.delay_s)
            return await self.app(scope, receive, send)
        if kind == "429":
            body = {"error": {"message": "injected fault: rate limited", "type": "rate_limit",
                              "param": None, "code": 429}}
            return await _send(send, 429, json.dumps(body).encode(),
                               [(b"retry-after", f"{self.retry_after_s:g}".encode())])
        if kind == "500":
            body = {"error": {"message": "injected fault: internal error", "type": "server_error",
                              "param": None, "code": 500}}
            return await _send(send, 500, json.dumps(body).encode())
        if kind == "garbage":
            return await _send(send, 200, b"<html>502 Bad Gateway (injected garbage)</html>")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"id": "cmpl-', "more_body": True})
        # returning with the body unfinished makes uvicorn close the connection (it logs
        # "ASGI callable returned without completing response"): the client sees it dropped


async def _send(send, status: int, body: bytes, headers=()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
