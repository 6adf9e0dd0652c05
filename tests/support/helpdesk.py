"""A ``HelpdeskClient`` on an ``httpx.MockTransport`` with an injected clock, for client and error-message tests."""

from __future__ import annotations

import random

import httpx

from ticketlens.adapters.helpdesk import HelpdeskClient

TOKEN = "s3cr3t-token-value"


class FakeTime:
    """Injected clock and sleep: waits are recorded and advance the clock instantly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def make_client(handler, *, fake=None, **kw) -> tuple[HelpdeskClient, FakeTime, list[httpx.Request]]:
    fake = fake or FakeTime()
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    kw.setdefault("requests_per_minute", None)
    kw.setdefault("export_requests_per_minute", None)
    client = HelpdeskClient(
        "https://acme.zendesk.test", email="ops@acme.test", api_token=TOKEN,
        transport=httpx.MockTransport(record), sleep=fake.sleep, clock=fake.clock, rng=random.Random(1), **kw,
    )
    return client, fake, seen
