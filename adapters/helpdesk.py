"""Zendesk REST API client (httpx + tenacity), plain Python: no Prefect, no warehouse.

Why it looks like this:
* Zendesk throttles hard (the incremental export allows 10 requests/minute by default), so the client paces
  itself with token buckets instead of hammering until it gets 429s; when a 429 arrives anyway it waits exactly
  what ``Retry-After`` says (fractional seconds and HTTP dates happen in the wild).
* 5xx, timeouts, dropped connections and truncated JSON are transient: bounded exponential backoff with jitter.
* 401/403/404 are configuration mistakes: retrying cannot help, so they fail at once and say what to check.
* A refused pagination cursor gets its own exception so the caller can restart from a start time.
* Tokens are secrets: they never appear in exception messages, reprs or logs (the header is kept as a
  ``SecretStr`` and only revealed while building a request).
* Clock, sleep and randomness are injected so tests run the whole retry/pacing logic in fake time.
"""

from __future__ import annotations

import base64
import logging
import math
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
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from ticketlens.adapters import http_body
from ticketlens.models.states import FINISHED_JOBS
from ticketlens.models.windows import as_utc

log = logging.getLogger("ticketlens.helpdesk")

EXPORT_PATH = "/api/v2/incremental/tickets/cursor.json"
RATINGS_PATH = "/api/v2/satisfaction_ratings"
SURVEY_RESPONSES_PATH = "/api/v2/guide/survey_responses"
UPDATE_MANY_PATH = "/api/v2/tickets/update_many.json"
MAX_UPDATE_MANY = 100
USER_AGENT = "ticketlens/0.1"
CREDENTIAL_SETTINGS = (
    "TICKETLENS_HELPDESK_EMAIL and TICKETLENS_HELPDESK_API_TOKEN (or TICKETLENS_HELPDESK_OAUTH_TOKEN)"
)
# Statuses worth repeating besides 5xx: request timeout and Zendesk's "conflict, try again" on concurrent writes.
RETRYABLE_4XX = frozenset({408, 409, 429})

Validator = Callable[[dict[str, Any]], None]


class HelpdeskError(RuntimeError):
    """Base class. Messages say what to check and never contain credentials."""


class HelpdeskAuthError(HelpdeskError):
    """401/403 or no credentials: the token or permissions are wrong; retrying cannot help."""


class HelpdeskNotFoundError(HelpdeskError):
    """404: wrong base URL or an endpoint this account does not have; retrying cannot help."""


class CursorRejectedError(HelpdeskError):
    """The API refused a pagination cursor (expired or invalid); the caller restarts from a start time."""


class MalformedPageError(HelpdeskError):
    """The body was not the JSON shape the contract promises (truncated, HTML error page, missing key)."""


class ResponseTooLargeError(HelpdeskError):
    """A response body passed TICKETLENS_HELPDESK_MAX_RESPONSE_MB once decompressed; not retried."""


class HelpdeskUnavailableError(HelpdeskError):
    """429/5xx/timeouts/connection errors outlasted the retries, or the server asked for too long a wait."""


class WriteOutcomeUnknownError(HelpdeskError):
    """A write (update_many) may or may not have been applied: the request was sent but no clear answer came
    back (read timeout, dropped connection, 500/502/504, a cut-off body). Re-sending it blindly could apply it
    twice, so the caller must read the tickets back instead (see ``tasks.writeback.reconcile_in_doubt``)."""


# Answers that mean "not applied, try again": request timeout (the server never got the whole request), conflict,
# rate limited, service unavailable.
# Any other failure after the request left us is ambiguous for a write.
WRITE_SAFE_TO_REPEAT = frozenset({408, 409, 429, 503})


class _Retryable(Exception):
    """Internal: a failed attempt that may succeed if repeated, with an optional server-imposed wait."""

    def __init__(self, detail: str, *, status: int | None = None, wait: float | None = None,
                 malformed: bool = False):
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.wait = wait
        self.malformed = malformed


@dataclass(frozen=True)
class TicketPage:
    """One incremental-export page; ``after_cursor`` is what to store to resume after this page."""

    tickets: list[dict[str, Any]]
    metric_sets: list[dict[str, Any]]
    after_cursor: str | None
    end_of_stream: bool
    url: str


@dataclass(frozen=True)
class RatingPage:
    """One page of satisfaction ratings; ``next_url`` is what to store to resume after this page."""

    ratings: list[dict[str, Any]]
    next_url: str | None
    has_more: bool
    url: str


@dataclass(frozen=True)
class JobStatus:
    """A Zendesk background job (update_many is asynchronous: poll ``get_job_status`` until finished)."""

    id: str
    status: str
    total: int | None
    progress: int | None
    results: list[dict[str, Any]]
    message: str | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOBS


class TokenBucket:
    """Smooth, thread-safe pacing: ``per_minute`` requests with a burst of at most ``max(1, per_minute/60)``.

    A small bucket (rather than a minute-sized one) spreads requests evenly, so 10/min means one every ~6 s
    instead of ten at once and then a long 429. Each caller reserves its slot under the lock and sleeps
    outside it, so concurrent threads queue up fairly without holding the lock while asleep.
    """

    def __init__(self, per_minute: float | None, *, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.rate = max(0.0, float(per_minute or 0)) / 60.0
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.clock, self.sleep = clock, sleep
        self.updated = clock()
        self.lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self) -> float:
        """Take one token, sleeping until it is due; returns the seconds waited (0 when disabled)."""
        if not self.enabled:
            return 0.0
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
            self.updated = now
            self.tokens -= 1.0
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)
        return wait


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: "2", "1.5", " 3 " or an HTTP date; garbage → None.

    Lenient because proxies and CDNs in front of Zendesk send all of these; ``None`` makes the caller fall back
    to its own backoff rather than failing or hammering.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds = _float_or_none(text)
    if seconds is not None:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    # "-0000" dates come back naive; HTTP dates are always GMT, which is how as_utc reads a naive value
    return max(0.0, as_utc(when).timestamp() - (time.time() if now is None else now))


def _reveal(value: str | SecretStr | None) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _path_of(url: str) -> str:
    """The path alone: error messages and logs never carry query strings (cursors, filters)."""
    return urlsplit(url).path or url


class HelpdeskClient:
    """A small, strict Zendesk client covering what TicketLens reads (export, CSAT, dimensions) and writes."""

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
        max_response_bytes: int = 64 * 2**20,
        support_type_scope: str | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise HelpdeskError(
                f"TICKETLENS_HELPDESK_BASE_URL must look like https://yourcompany.zendesk.com, got {self.base_url!r}"
            )
        self._origin = (parts.scheme, parts.netloc.lower())
        self._auth_header = self._authorization(email, api_token, oauth_token)
        self.last_headers: httpx.Headers = httpx.Headers()
        self.max_retries = max(0, int(max_retries))
        self.backoff_base, self.backoff_max, self.max_retry_after = backoff_base, backoff_max, max_retry_after
        self.max_response_bytes = int(max_response_bytes)
        # Sent with every incremental export: without "all", Zendesk may leave out tickets handled by AI agents.
        self.support_type_scope = support_type_scope or None
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._limiter = TokenBucket(requests_per_minute, clock=clock, sleep=sleep)
        self._export_limiter = TokenBucket(export_requests_per_minute, clock=clock, sleep=sleep)
        # follow_redirects=False: a redirect would re-send credentials somewhere we did not choose.
        self._http = httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(timeout), transport=transport, follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    @classmethod
    def from_settings(cls, settings, **overrides) -> HelpdeskClient:
        """Build from ``adapters.settings.Settings``; keyword overrides win (tests inject transport/sleep/clock)."""
        base_url = overrides.pop("base_url", settings.helpdesk_base_url)
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
            "max_response_bytes": int(settings.helpdesk_max_response_mb * 2**20),
            "support_type_scope": getattr(settings, "helpdesk_support_type_scope", None),
            **overrides,
        }
        return cls(base_url, **kwargs)

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
    def _authorization(email, api_token, oauth_token) -> SecretStr:
        """Bearer when an OAuth token is set, else Zendesk's ``email/token:TOKEN`` basic auth."""
        oauth, token = _reveal(oauth_token), _reveal(api_token)
        if oauth:
            return SecretStr(f"Bearer {oauth}")
        if email and token:
            raw = f"{email}/token:{token}".encode()
            return SecretStr("Basic " + base64.b64encode(raw).decode("ascii"))
        missing = "TICKETLENS_HELPDESK_EMAIL" if token else "TICKETLENS_HELPDESK_API_TOKEN"
        raise HelpdeskAuthError(
            f"No usable helpdesk credentials ({missing} is empty): set TICKETLENS_HELPDESK_OAUTH_TOKEN, or "
            "TICKETLENS_HELPDESK_EMAIL and TICKETLENS_HELPDESK_API_TOKEN."
        )

    # --------------------------------------------------------------------------------------- requests

    def _backoff(self, retry_number: int) -> float:
        """Full jitter, but never (almost) zero: a 0 s wait would just repeat the failure at once."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (retry_number - 1))
        return ceiling * (0.1 + 0.9 * self._rng.random())

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.wait is not None:
            return exc.wait
        return self._backoff(state.attempt_number)

    def _request(self, method: str, url: str, *, params: dict[str, Any] | None = None,
                 json: Any = None, cursor_request: bool = False, export: bool = False,
                 validate: Validator | None = None, write: bool = False) -> tuple[dict[str, Any], str]:
        """One logical request with pacing, retries and error mapping; returns (parsed JSON object, URL).

        Shape validation runs inside the retry loop, so a truncated or half-written page is fetched again
        rather than failing the run on the first blip. A ``write`` is repeated only when it certainly was not
        applied (the connection was never made, or 409/429/503); any other failure after sending it raises
        ``WriteOutcomeUnknownError`` at once instead of sending it a second time.
        """
        path = _path_of(url)

        def ambiguous(detail: str) -> WriteOutcomeUnknownError:
            return WriteOutcomeUnknownError(
                f"{method} {path}: {detail} after the request was sent, so whether the helpdesk applied it is "
                f"unknown. It is not re-sent (that could apply it twice); the tickets are read back and settled "
                f"on the next run."
            )

        def attempt() -> tuple[dict[str, Any], str]:
            if export:
                self._export_limiter.acquire()
            self._limiter.acquire()
            try:
                # Streamed, so the body is read under a size cap (see adapters/http_body.py) instead of whole.
                streamed = self._http.send(self._http.build_request(
                    method, url, params=params, json=json,
                    headers={"Authorization": self._auth_header.get_secret_value()},
                ), stream=True)
                try:
                    response = http_body.read_capped(streamed, self.max_response_bytes)
                finally:
                    streamed.close()
            except http_body.ResponseTooLargeError as exc:
                raise ResponseTooLargeError(
                    f"{method} {path}: the helpdesk sent a body larger than TICKETLENS_HELPDESK_MAX_RESPONSE_MB="
                    f"{self.max_response_bytes / 2**20:g} MiB after decompression ({exc.wire_bytes} bytes read on "
                    f"the wire when reading stopped). A page that large is a broken helpdesk or proxy; nothing from "
                    f"it was loaded and the cursor did not move. Lower TICKETLENS_HELPDESK_EXPORT_PAGE_SIZE, or raise "
                    f"the cap if the pages are genuinely that large."
                ) from None
            except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # never sent: safe to repeat, even a write
                raise _Retryable(f"timeout ({type(exc).__name__})") from None
            except httpx.ConnectError as exc:
                raise _Retryable(f"connection error ({type(exc).__name__})") from None
            except httpx.TimeoutException as exc:
                if write:
                    raise ambiguous(f"timeout ({type(exc).__name__})") from None
                raise _Retryable(f"timeout ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                if write:
                    raise ambiguous(f"connection lost ({type(exc).__name__})") from None
                raise _Retryable(f"connection error ({type(exc).__name__})") from None
            self.last_headers = response.headers  # rate-limit headers for the preflight check (ticketlens.doctor)
            try:
                body = self._parse(response, path, cursor_request)
                if validate is not None:
                    validate(body)
            except _Retryable as exc:
                if write and exc.status not in WRITE_SAFE_TO_REPEAT:
                    raise ambiguous(f"{exc.detail} (HTTP {response.status_code})") from None
                raise
            return body, str(response.request.url)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "Helpdesk %s %s failed (status %s: %s); retry %d/%d in %.2f s", method, path,
                getattr(exc, "status", None), getattr(exc, "detail", type(exc).__name__),
                state.attempt_number, self.max_retries, wait,
            )

        retrying = Retrying(
            retry=retry_if_exception_type(_Retryable),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retryable as exc:
            raise self._exhausted(method, path, exc) from None

    def _exhausted(self, method: str, path: str, exc: _Retryable) -> HelpdeskError:
        attempts = self.max_retries + 1
        status = exc.status if exc.status is not None else "none (no response)"
        if exc.malformed:
            return MalformedPageError(
                f"{method} {path}: {exc.detail}, still after {attempts} attempts (last status {status}). "
                f"The helpdesk keeps sending a broken page: check its status page and that "
                f"TICKETLENS_HELPDESK_BASE_URL={self.base_url} points at the Zendesk API, not a proxy or login page."
            )
        return HelpdeskUnavailableError(
            f"{method} {path} failed after {attempts} attempts (last status {status}: {exc.detail}). Check that "
            f"the helpdesk at TICKETLENS_HELPDESK_BASE_URL={self.base_url} is reachable and up, or raise "
            f"TICKETLENS_HELPDESK_MAX_RETRIES / TICKETLENS_HELPDESK_TIMEOUT_SECONDS; the next run resumes where "
            f"this one stopped."
        )

    def _parse(self, response: httpx.Response, path: str, cursor_request: bool) -> dict[str, Any]:
        """Map the status to a retry or a final error; return the JSON object on success."""
        status = response.status_code
        if status in RETRYABLE_4XX or status >= 500:
            # Only 429 and 503 promise a meaningful Retry-After; other statuses use our own backoff.
            header = response.headers.get("Retry-After") if status in (429, 503) else None
            wait = parse_retry_after(header)
            if wait is not None and wait > self.max_retry_after:
                raise HelpdeskUnavailableError(
                    f"The helpdesk answered HTTP {status} on {path} and asked to wait {wait:.0f} s (Retry-After), "
                    f"more than TICKETLENS_HELPDESK_MAX_RETRY_AFTER_SECONDS={self.max_retry_after:g}; the API quota "
                    f"is probably exhausted by another integration. The next run resumes where this one stopped."
                )
            if status == 429:
                detail = f"rate limited, Retry-After {header!r}" if header is not None else "rate limited"
            else:
                detail = f"HTTP {status}"
            raise _Retryable(detail, status=status, wait=wait)
        if status == 401:
            raise HelpdeskAuthError(
                f"The helpdesk refused the credentials (HTTP 401 on {path}). Check {CREDENTIAL_SETTINGS} for "
                f"TICKETLENS_HELPDESK_BASE_URL={self.base_url}."
            )
        if status == 403:
            raise HelpdeskAuthError(
                f"The helpdesk denied access (HTTP 403 on {path}): the credentials work, but this user may not use "
                f"the endpoint. The incremental ticket export, satisfaction ratings and CSAT survey responses are "
                f"admin-only in Zendesk: use an API token (or OAuth token) of a user with the admin role "
                f"({CREDENTIAL_SETTINGS}, TICKETLENS_HELPDESK_BASE_URL={self.base_url}). "
                f"`ticketlens doctor` checks the role."
            )
        if status == 404:
            raise HelpdeskNotFoundError(
                f"HTTP 404 on {path}: check TICKETLENS_HELPDESK_BASE_URL={self.base_url} "
                f"(e.g. https://yourcompany.zendesk.com) and that this account has the endpoint."
            )
        if status in (400, 422) and cursor_request:
            raise CursorRejectedError(
                f"HTTP {status} on {path}: the helpdesk rejected the pagination cursor "
                f"({_error_text(response)}); restart the stream from a start_time."
            )
        if 300 <= status < 400:
            target = urlsplit(response.headers.get("Location", ""))
            raise HelpdeskError(
                f"HTTP {status} on {path} redirects to {target.scheme}://{target.netloc}{target.path}; redirects are "
                f"not followed (they would resend credentials). Set TICKETLENS_HELPDESK_BASE_URL to the final "
                f"https:// address (currently {self.base_url})."
            )
        if status >= 400:
            raise HelpdeskError(
                f"HTTP {status} on {path}: {_error_text(response)}. The helpdesk rejected the request itself, so "
                f"it is not retried: check the run's parameters and, for a write-back (update_many), that the ids "
                f"in TICKETLENS_WRITEBACK_CUSTOM_FIELDS are custom ticket fields of this helpdesk."
            )
        try:
            body = http_body.loads(response.content)  # json.loads, but survives nesting too deep for it
        except UnicodeDecodeError:
            # Bytes that are not UTF-8 inside an otherwise complete page (a broken mail gateway): keep the
            # page, replace the bad bytes with U+FFFD and say so, rather than fail the stream on every retry.
            text = response.content.decode("utf-8", errors="replace")
            log.warning("Helpdesk page %s held %d invalid UTF-8 sequence(s); replaced with U+FFFD.",
                        path, text.count("\ufffd"))
            try:
                body = http_body.loads(text.encode())
            except ValueError:
                raise _Retryable("body is not valid JSON (and not valid UTF-8)", status=status,
                                 malformed=True) from None
        except ValueError:
            raise _Retryable(
                f"body is not valid JSON ({len(response.content)} bytes, "
                f"Content-Type {response.headers.get('Content-Type')!r})", status=status, malformed=True,
            ) from None
        if not isinstance(body, dict):
            raise _Retryable(f"JSON body is a {type(body).__name__}, expected an object", status=status,
                             malformed=True)
        return body

    def _follow(self, url: str) -> str:
        """Accept a pagination link only on the configured scheme and host: it will carry our credentials."""
        parts = urlsplit(url)
        if parts.scheme or parts.netloc:
            if (parts.scheme.lower(), parts.netloc.lower()) != self._origin:
                raise HelpdeskError(
                    f"Refusing to follow a pagination link to another host ({parts.scheme}://{parts.netloc}); "
                    f"expected {self._origin[0]}://{self._origin[1]} from TICKETLENS_HELPDESK_BASE_URL."
                )
        elif not url.startswith("/"):
            raise HelpdeskError(f"Refusing to follow a pagination link that is not a URL: {parts.path!r}")
        return url

    # ------------------------------------------------------------------------------------------ reads

    def export_tickets(self, *, start_time: int | None = None, cursor: str | None = None,
                       include_metric_sets: bool = True, per_page: int = 1000) -> Iterator[TicketPage]:
        """Cursor-based incremental ticket export, lazily page by page until ``end_of_stream``.

        Lazy so a caller (one Prefect task per page) can take ``next()`` and store ``after_cursor`` before asking
        for more; the export limiter paces only the pages actually fetched.
        """
        if (start_time is None) == (cursor is None):
            raise ValueError("export_tickets needs exactly one of start_time or cursor")
        params: dict[str, Any] = {"per_page": per_page}
        if self.support_type_scope:
            params["support_type_scope"] = self.support_type_scope
        if include_metric_sets:
            params["include"] = "metric_sets"
        if cursor is None:
            params["start_time"] = int(start_time)  # type: ignore[arg-type]
        else:
            params["cursor"] = cursor
        while True:
            sent_cursor = params.get("cursor")
            body, url = self._request("GET", EXPORT_PATH, params=dict(params), cursor_request=sent_cursor is not None,
                                      export=True, validate=_validate_export_page)
            page = TicketPage(
                tickets=body["tickets"], metric_sets=body.get("metric_sets") or [],
                after_cursor=body.get("after_cursor"), end_of_stream=_boolish(body["end_of_stream"]), url=url,
            )
            yield page
            if page.end_of_stream:
                return
            if page.after_cursor == sent_cursor:
                raise MalformedPageError(
                    f"GET {EXPORT_PATH}: after_cursor did not advance and end_of_stream is false; stopping instead "
                    f"of looping over the same page. Check the helpdesk (TICKETLENS_HELPDESK_BASE_URL={self.base_url})."
                )
            params.pop("start_time", None)
            params["cursor"] = page.after_cursor

    def export_satisfaction_ratings(self, *, start_time: int | None = None, next_url: str | None = None,
                                    page_size: int = 100) -> Iterator[RatingPage]:
        """CSAT ratings from ``start_time``, following ``links.next`` while ``meta.has_more``.

        ``next_url`` resumes from a stored link; it must be on the configured host because it carries our
        credentials. A 400/422 on such a link means the cursor expired (``CursorRejectedError``).
        """
        if (start_time is None) == (next_url is None):
            raise ValueError("export_satisfaction_ratings needs exactly one of start_time or next_url")
        url: str = RATINGS_PATH
        params: dict[str, Any] | None = None
        if next_url is not None:
            url = self._follow(next_url)
        else:
            params = {"start_time": int(start_time), "page[size]": page_size}  # type: ignore[arg-type]
        seen: set[str] = set()
        while True:
            seen.add(url)
            body, requested = self._request("GET", url, params=params, cursor_request=params is None,
                                             validate=_paged("satisfaction_ratings"))
            has_more, nxt = _next_link(body)
            yield RatingPage(ratings=body["satisfaction_ratings"], next_url=nxt, has_more=has_more, url=requested)
            if not has_more or nxt is None:
                return
            if nxt in seen:
                raise MalformedPageError(
                    f"GET {_path_of(url)}: links.next points at a page already read; stopping instead of "
                    f"repeating ratings. Check the helpdesk (TICKETLENS_HELPDESK_BASE_URL={self.base_url})."
                )
            url, params = self._follow(nxt), None

    def export_survey_responses(self, *, created_after_ms: int | None = None, next_url: str | None = None,
                                page_size: int = 100) -> Iterator[RatingPage]:
        """Current-CSAT survey responses (``GET /api/v2/guide/survey_responses``, admin-only), oldest first.

        Filtered on ``filter[created_at_start]`` (unix milliseconds) and paged with ``page[after]`` from
        ``meta.after_cursor`` (the Help Center pagination, which has no ``links.next``). ``next_url`` resumes
        from a stored page URL; it must be on the configured host. Each page is a ``RatingPage`` whose
        ``ratings`` are raw survey responses (``models.csat_api`` normalises them).
        """
        if (created_after_ms is None) == (next_url is None):
            raise ValueError("export_survey_responses needs exactly one of created_after_ms or next_url")
        base = {"page[size]": page_size, "sort": "id"}
        if next_url is not None:
            url, params = self._follow(next_url), None
        else:
            url, params = SURVEY_RESPONSES_PATH, {**base, "filter[created_at_start]": int(created_after_ms)}
        seen: set[str] = set()
        while True:
            body, requested = self._request("GET", url, params=params, cursor_request=params is None,
                                             validate=_require_list("survey_responses"))
            meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
            after = meta.get("after_cursor")
            has_more = bool(meta.get("has_more")) and isinstance(after, str) and bool(after)
            nxt = None
            if has_more:
                query = dict(httpx.URL(requested).params)
                query["page[after]"] = after
                nxt = str(httpx.URL(SURVEY_RESPONSES_PATH, params=query))
            yield RatingPage(ratings=body["survey_responses"], next_url=nxt, has_more=has_more, url=requested)
            if not has_more or nxt is None:
                return
            if nxt in seen:
                raise MalformedPageError(
                    f"GET {SURVEY_RESPONSES_PATH}: meta.after_cursor repeats a page already read; stopping instead "
                    f"of repeating survey responses (TICKETLENS_HELPDESK_BASE_URL={self.base_url})."
                )
            seen.add(nxt)
            url, params = nxt, None

    def _list_all(self, path: str, key: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every row of a small dimension endpoint: cursor pagination, tolerating offset-style ``next_page``."""
        out: list[dict[str, Any]] = []
        url: str = path
        query: dict[str, Any] | None = {"page[size]": 100, **(params or {})}
        seen: set[str] = set()
        while True:
            seen.add(url)
            body, _ = self._request("GET", url, params=query, validate=_paged(key))
            out.extend(body[key])
            _, nxt = _next_link(body)
            if nxt is None:
                return out
            if nxt in seen:
                raise MalformedPageError(f"GET {path}: the next-page link repeats a page already read ({key}).")
            url, query = self._follow(nxt), None

    def list_groups(self) -> list[dict[str, Any]]:
        return self._list_all("/api/v2/groups.json", "groups")

    def list_agents(self) -> list[dict[str, Any]]:
        """Agents and admins (end users are not needed and can number in the millions)."""
        return self._list_all("/api/v2/users.json", "users", {"role[]": ["agent", "admin"]})

    def list_ticket_fields(self) -> list[dict[str, Any]]:
        return self._list_all("/api/v2/ticket_fields.json", "ticket_fields")

    def show_many(self, ids: list[int]) -> list[dict[str, Any]]:
        """Current state of up to 100 tickets (``/api/v2/tickets/show_many.json?ids=...``); deleted ones are absent."""
        if not ids:
            return []
        if len(ids) > MAX_UPDATE_MANY:
            raise ValueError(f"show_many takes at most {MAX_UPDATE_MANY} ids, got {len(ids)}")
        body, _ = self._request("GET", "/api/v2/tickets/show_many.json",
                                params={"ids": ",".join(str(int(i)) for i in ids)}, validate=_require_list("tickets"))
        return [t for t in body["tickets"] if isinstance(t, dict)]

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One GET with the client's pacing, retries and error mapping (the preflight check's probes)."""
        body, _ = self._request("GET", path, params=params)
        return body

    # ----------------------------------------------------------------------------------------- writes

    def update_many(self, updates: list[dict[str, Any]]) -> JobStatus:
        """Batch update ≤ 100 tickets (tags added/removed, custom fields); returns the queued job.

        Checked before any request because Zendesk rejects the whole batch otherwise. Each update is expected
        to look like ``{"id": 1, "additional_tags": [...], "remove_tags": [...], "custom_fields": [...]}``;
        those operations are idempotent in effect, but each request is a job and a write-back, so a request is
        repeated only when the helpdesk certainly did not apply it (409/429/503, no connection). A timeout or
        another failure after sending raises ``WriteOutcomeUnknownError`` (see ``_request``).
        """
        if not updates:
            raise ValueError("update_many needs at least one ticket update")
        if len(updates) > MAX_UPDATE_MANY:
            raise ValueError(f"update_many takes at most {MAX_UPDATE_MANY} tickets, got {len(updates)}")
        missing = [i for i, update in enumerate(updates) if not isinstance(update, dict) or "id" not in update]
        if missing:
            raise ValueError(f"update_many: updates at positions {missing[:10]} have no ticket 'id'")
        body, _ = self._request("PUT", UPDATE_MANY_PATH, json={"tickets": updates}, validate=_validate_job,
                                write=True)
        return _job_status(body)

    def get_job_status(self, job_id: str) -> JobStatus:
        """Poll a background job (``/api/v2/job_statuses/{id}``) started by ``update_many``."""
        if not job_id or "/" in str(job_id):
            raise ValueError(f"invalid job id {job_id!r}")
        body, _ = self._request("GET", f"/api/v2/job_statuses/{job_id}", validate=_validate_job)
        return _job_status(body)


# ------------------------------------------------------------------------------------ shape checks


def _malformed(detail: str) -> _Retryable:
    return _Retryable(detail, status=200, malformed=True)


def _boolish(value: Any) -> bool:
    """``end_of_stream`` as a real bool: ``bool("false")`` would be True and silently end the export."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise _malformed(f"key 'end_of_stream' is {value!r}, not a boolean")


def _require_list(key: str) -> Validator:
    def check(body: dict[str, Any]) -> None:
        if key not in body:
            raise _malformed(f"key {key!r} missing from the page")
        if not isinstance(body[key], list):
            raise _malformed(f"key {key!r} is a {type(body[key]).__name__}, not a list")

    return check


def _validate_export_page(body: dict[str, Any]) -> None:
    _require_list("tickets")(body)
    if "end_of_stream" not in body:
        raise _malformed("key 'end_of_stream' missing from the page")
    end = _boolish(body["end_of_stream"])
    if not isinstance(body.get("metric_sets", []), list | None):
        raise _malformed("key 'metric_sets' is not a list")
    cursor = body.get("after_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise _malformed("key 'after_cursor' is not a string")
    if not end and not cursor:
        raise _malformed("key 'after_cursor' missing while end_of_stream is false")


def _paged(key: str) -> Validator:
    """A cursor-paginated page: the list under ``key``, and a ``links.next`` whenever ``meta.has_more``."""
    require = _require_list(key)

    def check(body: dict[str, Any]) -> None:
        require(body)
        has_more, nxt = _next_link(body)
        if has_more and nxt is None:
            raise _malformed("key 'links.next' missing while meta.has_more is true")

    return check


def _validate_job(body: dict[str, Any]) -> None:
    job = body.get("job_status")
    if not isinstance(job, dict) or "id" not in job:
        raise _malformed("key 'job_status' missing or without an 'id'")


def _next_link(body: dict[str, Any]) -> tuple[bool, str | None]:
    """(has_more, next URL) from cursor pagination (``meta``/``links``) or offset pagination (``next_page``)."""
    meta, links = body.get("meta"), body.get("links")
    if isinstance(meta, dict) and "has_more" in meta:
        has_more = bool(meta.get("has_more"))
        nxt = links.get("next") if has_more and isinstance(links, dict) else None
        return has_more, nxt if isinstance(nxt, str) and nxt else None
    nxt = body.get("next_page")
    if isinstance(nxt, str) and nxt:
        return True, nxt
    return False, None


def _job_status(body: dict[str, Any]) -> JobStatus:
    job = body["job_status"]
    return JobStatus(id=str(job["id"]), status=str(job.get("status")), total=job.get("total"),
                     progress=job.get("progress"), results=list(job.get("results") or []),
                     message=job.get("message"), raw=job)


def _error_text(response: httpx.Response) -> str:
    """A short description from Zendesk's error body, for messages (bodies never echo our credentials)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("description") or body.get("error") or body)[:200]
    return str(body)[:200]


_CLIENTS: dict[tuple, HelpdeskClient] = {}


def client_from_settings(settings) -> HelpdeskClient:
    """One client per distinct settings per process, so the client-side rate limiter spans the whole run.

    The key includes the secret values (a rotated token gets a fresh client) but is never logged.
    """
    secrets = tuple(
        s.get_secret_value() if s is not None else None
        for s in (settings.helpdesk_api_token, settings.helpdesk_oauth_token)
    )
    key = (settings.model_dump_json(), secrets)
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = HelpdeskClient.from_settings(settings)
    return client
