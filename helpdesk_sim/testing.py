"""Run the simulator for tests, demos and benchmarks: in a background thread or as a subprocess."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from ticketlens.helpdesk_sim.dataset import Dataset
from ticketlens.helpdesk_sim.server import Faults, SimConfig, create_app


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class SimHandle:
    """What a test needs: where the simulator is, its credentials, and its admin API."""

    base_url: str
    email: str
    api_token: str
    oauth_token: str

    def _admin(self, method: str, path: str, **kw) -> Any:
        response = httpx.request(method, f"{self.base_url}/_sim/{path}", timeout=60, **kw)
        response.raise_for_status()
        return response.json()

    def advance(self, seconds: int) -> int:
        return self._admin("POST", "clock", json={"advance_seconds": int(seconds)})["now"]

    def set_clock(self, unix: int) -> int:
        return self._admin("POST", "clock", json={"set": int(unix)})["now"]

    def now(self) -> int:
        return self._admin("GET", "clock")["now"]

    def set_faults(self, **faults: Any) -> dict:
        return self._admin("POST", "faults", json=faults)

    def snapshot(self) -> dict:
        return self._admin("GET", "snapshot")

    def stats(self) -> dict:
        return self._admin("GET", "stats")

    def ticket(self, ticket_id: int) -> dict:
        return self._admin("GET", f"tickets/{ticket_id}")

    def updates(self) -> list[dict]:
        return self._admin("GET", "updates")

    def incidents(self) -> list[dict]:
        """Planted incidents that have started (live mode only)."""
        return self._admin("GET", "incidents")


def client_env(warehouse_url: str, sim: SimHandle, rate_per_minute: int = 60_000, **extra: str) -> dict[str, str]:
    """TICKETLENS_* settings that point a run at ``sim`` with pacing and backoff short enough for tests.

    Runs that train use the fast ``tfidf`` classifier profile: these tests are about ingest, scoring and
    write-back mechanics. The default profile is trained and served through the flow by its own test
    (tests/flows/test_training.py) and by the production-path test (tests/e2e/test_deployments.py). ``extra`` overrides.
    """
    return {
        "TICKETLENS_CLASSIFIER_PROFILE": "tfidf",
        "TICKETLENS_WAREHOUSE_URL": warehouse_url,
        "TICKETLENS_HELPDESK_BASE_URL": sim.base_url,
        "TICKETLENS_HELPDESK_EMAIL": sim.email,
        "TICKETLENS_HELPDESK_API_TOKEN": sim.api_token,
        "TICKETLENS_HELPDESK_EXPORT_REQUESTS_PER_MINUTE": str(rate_per_minute),
        "TICKETLENS_HELPDESK_REQUESTS_PER_MINUTE": str(rate_per_minute),
        "TICKETLENS_HELPDESK_BACKOFF_BASE_SECONDS": "0.01",
        "TICKETLENS_HELPDESK_BACKOFF_MAX_SECONDS": "0.05",
        **extra,
    }


def _wait_healthy(url: str, timeout: float, alive=lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the simulator exited during start-up")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/_sim/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"the simulator at {url} did not become healthy within {timeout:.0f} s")


@contextlib.contextmanager
def running_simulator(dataset: Dataset, **overrides: Any) -> Iterator[SimHandle]:
    """Serve ``dataset`` with uvicorn in a background thread on a free loopback port."""
    fault_keys = {k: overrides.pop(k) for k in list(overrides) if k in Faults.__dataclass_fields__}
    config = SimConfig(port=free_port(), faults=Faults(**fault_keys), **overrides)
    with _serving(create_app(dataset, config), config) as handle:
        yield handle


@contextlib.contextmanager
def running_live_simulator(live: Any, wall=time.time, **overrides: Any) -> Iterator[SimHandle]:
    """The live-mode simulator (``helpdesk_sim.live.LiveConfig``) in a background thread on a free port."""
    from ticketlens.helpdesk_sim.live import create_live_app

    fault_keys = {k: overrides.pop(k) for k in list(overrides) if k in Faults.__dataclass_fields__}
    config = SimConfig(port=free_port(), faults=Faults(**fault_keys), **overrides)
    with _serving(create_live_app(live, config, wall=wall), config) as handle:
        yield handle


@contextlib.contextmanager
def _serving(app, config: SimConfig) -> Iterator[SimHandle]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="helpdesk-sim", daemon=True)
    thread.start()
    url = f"http://{config.host}:{config.port}"
    try:
        _wait_healthy(url, 30, thread.is_alive)
        yield SimHandle(url, config.email, config.api_token, config.oauth_token)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class SimulatorProcess:
    """``python -m ticketlens.helpdesk_sim serve …`` as a child process (for the demo and benchmarks)."""

    def __init__(self, args: list[str], host: str = "127.0.0.1", port: int = 8765, startup_timeout: float = 120):
        self.args, self.host, self.port, self.startup_timeout = args, host, port, startup_timeout
        self.base_url = f"http://{host}:{port}"
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()

    def __enter__(self) -> SimulatorProcess:
        with socket.socket() as sock:
            if sock.connect_ex((self.host, self.port)) == 0:
                raise RuntimeError(
                    f"Port {self.port} on {self.host} is already in use: stop whatever listens there (an old "
                    f"simulator? `make sim`?) or point TICKETLENS_HELPDESK_BASE_URL elsewhere."
                )
        cmd = [sys.executable, "-m", "ticketlens.helpdesk_sim", "serve", *self.args, "--host", self.host, "--port", str(self.port)]
        proc = self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            _wait_healthy(self.base_url, self.startup_timeout, lambda: proc.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            self.__exit__(None, None, None)
            raise RuntimeError(f"{exc}. Simulator output:\n{self.output()[-3000:]}") from None
        return self

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
