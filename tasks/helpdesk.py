"""Zendesk REST API client (httpx + tenacity), plain Python: no Prefect, no warehouse.

Why it looks like this:
* Zendesk throttles hard (the incremental export allows 10 requests/minute by default), so the client paces
  itself with token buckets instead of hammering until it gets 429s; when a 429 arrives anyway it waits exactly
  what ``Retry-After`` says (fractional seconds and HTTP dates happen in the wild).
* 5xx, timeouts, dropped connections and truncated JSON are transient: bounded exponential backoff with jitter.
* 401/403/404 are configuration mistakes: retrying cannot help, so they fail at once and say what to check.
* Tokens are secrets: they never appear in exception messages, reprs or logs.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

log = logging.getLogger("ticketlens.helpdesk")

EXPORT_PATH = "/api/v2/incremental/tickets/cursor.json"
RATINGS_PATH = "/api/v2/satisfaction_ratings"
MAX_UPDATE_MANY = 100


class HelpdeskError(RuntimeError):
    """Base class. Messages say what to check and never contain credentials."""


class HelpdeskAuthError(HelpdeskError):
    """401/403: credentials or permissions are wrong; retrying cannot help."""


class HelpdeskNotFoundError(HelpdeskError):
    """404: wrong base URL or an endpoint this account does not have."""


class CursorRejectedError(HelpdeskError):
    """The API refused a pagination cursor (expired or invalid); the caller restarts from a start time."""


class MalformedPageError(HelpdeskError):
    """The body was not the JSON shape the contract promises (truncated, HTML error page, missing key)."""


class HelpdeskUnavailableError(HelpdeskError):
    """Retries exhausted on 429/5xx/timeouts/connection errors."""


class _Retryable(Exception):
    """Internal: a failed attempt that may succeed if repeated, with an optional server-imposed wait."""

    def __init__(self, message: str, *, wait: float | None = None, status: int | None = None,
                 final: HelpdeskError | None = None):
        super().__init__(message)
        self.wait = wait
        self.status = status
        self.final = final


@dataclass(frozen=True)
class TicketPage:
    tickets: list[dict[str, Any]]
    metric_sets: list[dict[str, Any]]
    after_cursor: str | None
    end_of_stream: bool
    url: str


@dataclass(frozen=True)
class RatingPage:
    ratings: list[dict[str, Any]]
    next_url: str | None
    has_more: bool
    url: str


@dataclass(frozen=True)
class JobStatus:
    id: str
    status: str
    total: int | None
    progress: int | None
    results: list[dict[str, Any]]
    message: str | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "killed")


class TokenBucket:
    """Smooth client-side pacing: ``per_minute`` requests, a burst of at most ``max(1, per_minute/60)``."""

    def __init__(self, per_minute: float | None, *, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.rate = (per_minute or 0) / 60.0
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.clock, self.sleep = clock, sleep
        self.updated = clock()
        self.lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds waited."""
        if self.rate <= 0:
            return 0.0
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            self.tokens -= 1.0
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)
        return wait


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: "2", "1.5", " 3 ", or an HTTP date. Garbage → None."""
    if value is None:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HelpdeskClient:
    """A small, strict Zendesk client covering what TicketLens reads and writes."""

    def __init__(
        self,
        base_url: str,
        *,
        email: str | None = None,
        api_token: str | SecretStr | None = None,
        oauth_token: str | SecretStr | None = None,
        requests_per_minute: float | None = 400,
        export_requests_per_minute: float | None = 10,
        timeout: float = 30.0,
        max_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_retry_after: float = 600.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._host = urlsplit(self.base_url).netloc
        self._auth_header = self._authorization(email, api_token, oauth_token)
        self.max_retries = max_retries
        self.backoff_base, self.backoff_max, self.max_retry_after = backoff_base, backoff_max, max_retry_after
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._limiter = TokenBucket(requests_per_minute, clock=clock, sleep=sleep)
        self._export_limiter = TokenBucket(export_requests_per_minute, clock=clock, sleep=sleep)
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport,
            headers={"User-Agent": "ticketlens/0.1", "Accept": "application/json"},
        )

    @classmethod
    def from_settings(cls, settings, **overrides) -> HelpdeskClient:
        kwargs = {
            "email": settings.helpdesk_email,
            "api_token": settings.helpdesk_api_token,
            "oauth_token": settings.helpdesk_oauth_token,
            "requests_per_minute": settings.helpdesk_requests_per_minute,
            "export_requests_per_minute": settings.helpdesk_export_requests_per_minute,
            "timeout": settings.helpdesk_timeout_seconds,
            "max_retries": settings.helpdesk_max_retries,
            "backoff_base": settings.helpdesk_backoff_base_seconds,
            "backoff_max": settings.helpdesk_backoff_max_seconds,
            "max_retry_after": settings.helpdesk_max_retry_after_seconds,
            **overrides,
        }
        return cls(settings.helpdesk_base_url, **kwargs)

    def __repr__(self) -> str:
        return f"HelpdeskClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HelpdeskClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ auth

    @staticmethod
    def _authorization(email, api_token, oauth_token) -> str:
        def reveal(value):
            return value.get_secret_value() if isinstance(value, SecretStr) else value

        oauth, token = reveal(oauth_token), reveal(api_token)
        if oauth:
            return f"Bearer {oauth}"
        if email and token:
            raw = f"{email}/token:{token}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        raise HelpdeskAuthError(
            "No helpdesk credentials: set TICKETLENS_HELPDESK_OAUTH_TOKEN, or TICKETLENS_HELPDESK_EMAIL and "
            "TICKETLENS_HELPDESK_API_TOKEN."
        )

    # --------------------------------------------------------------------------------------- requests

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return ceiling * (0.1 + 0.9 * self._rng.random())

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.wait is not None:
            return exc.wait
        return self._backoff(state.attempt_number)

    def _request(self, method: str, url: str, *, params=None, json=None, cursor_request: bool = False,
                 export: bool = False, expected: dict[str, type] | None = None) -> dict[str, Any]:
        """One logical request with pacing, retries and error mapping; returns the parsed JSON object."""
        path = urlsplit(url).path if url.startswith("http") else url

        def attempt() -> dict[str, Any]:
            if export:
                self._export_limiter.acquire()
            self._limiter.acquire()
            try:
                response = self._http.request(method, url, params=params, json=json,
                                              headers={"Authorization": self._auth_header})
            except httpx.TimeoutException as exc:
                raise _Retryable(f"timeout ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                raise _Retryable(f"connection error ({type(exc).__name__})") from None
            body = self._handle(response, path, cursor_request)
            self._check_keys(body, path, **(expected or {}))
            return body

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception()
            log.warning("Helpdesk %s %s failed (%s); retry %d/%d in %.2f s", method, path, exc,
                        state.attempt_number, self.max_retries, state.next_action.sleep if state.next_action else 0)

        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable) and e.final is None),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retryable as exc:
            if exc.final is not None:
                raise exc.final from None
            attempts = self.max_retries + 1
            if str(exc).startswith("malformed"):
                raise MalformedPageError(
                    f"{method} {path}: {exc} after {attempts} attempts. The helpdesk keeps sending a broken page; "
                    f"check its status page, or raise TICKETLENS_HELPDESK_MAX_RETRIES."
                ) from None
            raise HelpdeskUnavailableError(
                f"{method} {path} failed after {attempts} attempts: {exc}. Check that the helpdesk at "
                f"TICKETLENS_HELPDESK_BASE_URL={self.base_url} is up; the next run resumes where this one stopped."
            ) from None

    def _handle(self, response: httpx.Response, path: str, cursor_request: bool) -> dict[str, Any]:
        status = response.status_code
        if status == 429:
            header = response.headers.get("Retry-After")
            wait = parse_retry_after(header)
            if wait is not None and wait > self.max_retry_after:
                raise _Retryable("rate limited", status=429, final=HelpdeskUnavailableError(
                    f"The helpdesk asked to wait {wait:.0f} s (Retry-After) on {path}, more than "
                    f"TICKETLENS_HELPDESK_MAX_RETRY_AFTER_SECONDS={self.max_retry_after:g}; the API quota is "
                    f"probably exhausted by another integration. The next run resumes where this one stopped."
                ))
            raise _Retryable(f"429 rate limited (Retry-After: {header!r})", wait=wait, status=429)
        if status >= 500:
            raise _Retryable(f"HTTP {status}", status=status)
        if status in (401, 403):
            raise _Retryable("auth", final=HelpdeskAuthError(
                f"The helpdesk refused the credentials (HTTP {status} on {path}). Check TICKETLENS_HELPDESK_EMAIL "
                f"and TICKETLENS_HELPDESK_API_TOKEN (or TICKETLENS_HELPDESK_OAUTH_TOKEN) for "
                f"TICKETLENS_HELPDESK_BASE_URL={self.base_url}, and that the user may read tickets."
            ))
        if status == 404:
            raise _Retryable("not found", final=HelpdeskNotFoundError(
                f"HTTP 404 on {path}: check TICKETLENS_HELPDESK_BASE_URL={self.base_url} "
                f"(e.g. https://yourcompany.zendesk.com)."
            ))
        if status in (400, 422) and cursor_request:
            raise _Retryable("cursor", final=CursorRejectedError(
                f"HTTP {status} on {path}: the helpdesk rejected the pagination cursor ({_error_text(response)})."
            ))
        if status >= 400:
            raise _Retryable("client error", final=HelpdeskError(
                f"HTTP {status} on {path}: {_error_text(response)}"
            ))
        try:
            body = response.json()
        except ValueError:
            raise _Retryable(f"malformed JSON body on {path} ({len(response.content)} bytes)", status=status) from None
        if not isinstance(body, dict):
            raise _Retryable(f"malformed JSON on {path}: expected an object", status=status)
        return body

    def _check_keys(self, body: dict[str, Any], path: str, **expected: type) -> None:
        for key, kind in expected.items():
            if not isinstance(body.get(key), kind):
                raise _Retryable(f"malformed page on {path}: key {key!r} missing or not a {kind.__name__}")

    def _get_page(self, url: str, params, *, cursor_request: bool, export: bool, **expected: type) -> dict:
        """GET whose body shape is checked inside the retry loop (a truncated or drifted body is retried)."""
        return self._request("GET", url, params=params, cursor_request=cursor_request, export=export,
                             expected=expected)

    # ------------------------------------------------------------------------------------------ reads

    def export_tickets(self, *, start_time: int | None = None, cursor: str | None = None,
                       include_metric_sets: bool = True, per_page: int = 1000) -> Iterator[TicketPage]:
        """Cursor-based incremental ticket export, lazily page by page until ``end_of_stream``."""
        if (start_time is None) == (cursor is None):
            raise ValueError("export_tickets needs exactly one of start_time or cursor")
        params: dict[str, Any] = {"per_page": per_page}
        if include_metric_sets:
            params["include"] = "metric_sets"
        if cursor is None:
            params["start_time"] = int(start_time)
        else:
            params["cursor"] = cursor
        while True:
            body = self._get_page(EXPORT_PATH, dict(params), cursor_request="cursor" in params, export=True,
                                  tickets=list)
            page = TicketPage(
                tickets=body["tickets"], metric_sets=body.get("metric_sets") or [],
                after_cursor=body.get("after_cursor"), end_of_stream=bool(body.get("end_of_stream")),
                url=EXPORT_PATH,
            )
            yield page
            if page.end_of_stream or not page.after_cursor:
                return
            params.pop("start_time", None)
            params["cursor"] = page.after_cursor

    def export_satisfaction_ratings(self, *, start_time: int | None = None, next_url: str | None = None,
                                    page_size: int = 100) -> Iterator[RatingPage]:
        """CSAT ratings from ``start_time``, following ``links.next`` while ``meta.has_more``."""
        if (start_time is None) == (next_url is None):
            raise ValueError("export_satisfaction_ratings needs exactly one of start_time or next_url")
        url: str = RATINGS_PATH
        params: dict[str, Any] | None = {"start_time": int(start_time), "page[size]": page_size} \
            if start_time is not None else None
        if next_url is not None:
            url = self._same_host(next_url)
        while True:
            body = self._get_page(url, params, cursor_request=params is None, export=False,
                                  satisfaction_ratings=list)
            meta = body.get("meta") or {}
            links = body.get("links") or {}
            has_more = bool(meta.get("has_more"))
            nxt = links.get("next") if has_more else None
            yield RatingPage(ratings=body["satisfaction_ratings"], next_url=nxt, has_more=has_more and bool(nxt),
                             url=urlsplit(url).path if url.startswith("http") else url)
            if not has_more or not nxt:
                return
            url, params = self._same_host(nxt), None

    def _same_host(self, url: str) -> str:
        if url.startswith("http") and urlsplit(url).netloc != self._host:
            raise HelpdeskError(
                f"Refusing to follow a pagination link to another host ({urlsplit(url).netloc}); expected "
                f"{self._host} from TICKETLENS_HELPDESK_BASE_URL."
            )
        return url

    def _list_all(self, path: str, key: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        url, query = path, {"page[size]": 100, **(params or {})}
        while True:
            body = self._get_page(url, query, cursor_request=False, export=False, **{key: list})
            out.extend(body[key])
            meta, links = body.get("meta") or {}, body.get("links") or {}
            nxt = links.get("next") if meta.get("has_more") else body.get("next_page")
            if not nxt:
                return out
            url, query = self._same_host(nxt), None

    def list_groups(self) -> list[dict[str, Any]]:
        return self._list_all("/api/v2/groups.json", "groups")

    def list_agents(self) -> list[dict[str, Any]]:
        return self._list_all("/api/v2/users.json", "users", {"role[]": ["agent", "admin"]})

    def list_ticket_fields(self) -> list[dict[str, Any]]:
        return self._list_all("/api/v2/ticket_fields.json", "ticket_fields")

    # ----------------------------------------------------------------------------------------- writes

    def update_many(self, updates: list[dict[str, Any]]) -> JobStatus:
        """Batch update ≤ 100 tickets (tags added/removed, custom fields); returns the queued job."""
        if not updates:
            raise ValueError("update_many needs at least one ticket update")
        if len(updates) > MAX_UPDATE_MANY:
            raise ValueError(f"update_many takes at most {MAX_UPDATE_MANY} tickets, got {len(updates)}")
        body = self._request("PUT", "/api/v2/tickets/update_many.json", json={"tickets": updates})
        return _job_status(body)

    def get_job_status(self, job_id: str) -> JobStatus:
        return _job_status(self._request("GET", f"/api/v2/job_statuses/{job_id}"))


def _job_status(body: dict[str, Any]) -> JobStatus:
    job = body.get("job_status")
    if not isinstance(job, dict) or "id" not in job:
        raise MalformedPageError("job status response without a 'job_status' object")
    return JobStatus(id=str(job["id"]), status=str(job.get("status")), total=job.get("total"),
                     progress=job.get("progress"), results=list(job.get("results") or []),
                     message=job.get("message"), raw=job)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("description") or body.get("error") or body)[:200]
    return str(body)[:200]
