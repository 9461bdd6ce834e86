"""HTTP to the upstream: one pooled session, the platform's key, retries only while safe.

The real adapter of the Transport port (common.ports). It knows nothing of images: it POSTs a
body under a base URL and returns the reply, or raises one of the three failures below.

- One pooled `requests.Session` per container; the platform's key (from a provider, so a rotated
  key is picked up), never the customer's token, goes in `Authorization`.
- Retries follow urllib3's `Retry` policy (which statuses, how many, backoff, `Retry-After`),
  but only while the deadline allows another full attempt, and never after the request may have
  reached the upstream (read timeout, dropped connection): the work may already be under way
  and billed there, and a second attempt would be billed twice.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import InvalidHeader, MaxRetryError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CONNECT_TIMEOUT_SECONDS = 3.05
# An event stream is read in pieces of at most this size, each as soon as it arrives.
STREAM_READ_BYTES = 1 << 16
# A retry is only worth starting if at least this much time is left for it.
MIN_ATTEMPT_SECONDS = 2.0
POLICY = Retry(
    total=2, connect=2, read=0, status=2, other=0, redirect=0, allowed_methods=None,
    status_forcelist=RETRY_STATUSES, backoff_factor=0.5, backoff_max=8, respect_retry_after_header=True,
    raise_on_status=False,
)


class TransportError(Exception):
    """No reply to give back."""


class Unreachable(TransportError):
    """The upstream never received the request (connection refused or timed out, after retries)."""


class ConnectionLost(TransportError):
    """The connection broke after the request may have reached the upstream: not retried."""


class TimedOut(TransportError):
    """The deadline passed before a reply (or before the request could be sent)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no reply within {seconds:.0f} s")
        self.seconds = seconds


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: Any  # requests' case-insensitive dict
    content: bytes  # empty for an event stream, whose bytes come from `chunks`
    elapsed_ms: int  # until the headers (and the whole body, unless streamed)
    chunks: Iterator[bytes] | None = None  # an event stream's bytes as they arrive (streamed replies only)
    close: Callable[[], None] = lambda: None  # give the connection back (streamed replies only)

    @property
    def streamed(self) -> bool:
        return self.chunks is not None

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError:
            return None


class HttpTransport:
    def __init__(self, base_url: str, api_key: Callable[[], str], session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.session = session or pooled_session()

    def post(self, path: str, *, deadline: float, json_body: Any = None, data: Any = None,
             files: Any = None, stream_events: bool = False) -> HttpReply:
        """POST with bounded retries; `deadline` is a time.monotonic() value. With `stream_events`,
        a 200 `text/event-stream` answer comes back unread: its bytes arrive through `chunks`, each
        read bounded by the deadline; every other answer is read whole, as without it."""
        url = f"{self.base_url}{path}"
        headers = {"Authorization": f"Bearer {self._api_key()}", "Accept": "application/json, text/event-stream"}
        policy = POLICY.new()
        started = time.monotonic()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimedOut(time.monotonic() - started)
            try:
                response = self.session.post(
                    url, json=json_body, data=data, files=files, headers=headers, stream=stream_events,
                    timeout=(min(CONNECT_TIMEOUT_SECONDS, remaining), remaining),
                )
            except requests.exceptions.ConnectTimeout as exc:
                policy = self._next_try(policy, url, deadline, error=exc)
                continue
            except requests.exceptions.ReadTimeout:
                raise TimedOut(time.monotonic() - started) from None
            except requests.exceptions.ConnectionError as exc:
                if not _never_sent(exc):
                    raise ConnectionLost() from None
                policy = self._next_try(policy, url, deadline, error=exc)
                continue
            if stream_events and response.status_code == 200 and \
                    response.headers.get("content-type", "").lower().startswith("text/event-stream"):
                return HttpReply(200, response.headers, b"", int((time.monotonic() - started) * 1000),
                                 chunks=_chunks_of(response, started), close=response.close)
            try:
                content = response.content
            except requests.exceptions.RequestException:
                raise ConnectionLost() from None
            reply = HttpReply(response.status_code, response.headers, content, int((time.monotonic() - started) * 1000))
            if response.status_code not in RETRY_STATUSES:
                return reply
            try:
                policy = self._next_try(policy, url, deadline, response=response)
            except _GiveUp:
                return reply

    @staticmethod
    def _next_try(policy: Retry, url: str, deadline: float, *, error: Exception | None = None,
                  response: requests.Response | None = None) -> Retry:
        """Count one retry and sleep before it, or give up (the policy or the deadline says so)."""
        try:
            policy = policy.increment(
                method="POST", url=url, response=response.raw if response is not None else None,
                error=_urllib3_cause(error) if error is not None else None,
            )
        except MaxRetryError:
            if response is not None:
                raise _GiveUp() from None
            raise Unreachable() from None
        wait = _retry_after(policy, response) if response is not None else None
        wait = policy.get_backoff_time() if wait is None else wait
        if time.monotonic() + wait + MIN_ATTEMPT_SECONDS > deadline:
            if response is not None:
                raise _GiveUp()
            raise Unreachable()
        time.sleep(wait)
        return policy


def _chunks_of(response: requests.Response, started: float) -> Iterator[bytes]:
    """A streamed body's bytes as they arrive; a read that outlasts the deadline or a dropped
    connection ends it with the transport's own failures."""
    raw = response.raw  # urllib3: read1 returns what has arrived (requests' iter_content would wait to fill)
    try:
        while data := raw.read1(STREAM_READ_BYTES, decode_content=True):
            yield data
    except ReadTimeoutError:
        raise TimedOut(time.monotonic() - started) from None
    except (Urllib3HTTPError, OSError):
        raise ConnectionLost() from None
    finally:
        response.close()


class _GiveUp(Exception):
    """Stop retrying and answer with the last upstream response."""


def _retry_after(policy: Retry, response: requests.Response) -> float | None:
    """Retry-After in seconds (integer or HTTP date via urllib3; fractions too, as some send)."""
    try:
        return policy.get_retry_after(response.raw)
    except InvalidHeader:
        try:
            return max(float(response.headers.get("retry-after", "")), 0.0)
        except ValueError:
            return None


def _never_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection was never established, so the upstream saw nothing."""
    cause = exc.args[0] if exc.args else None
    return isinstance(cause, MaxRetryError) and isinstance(cause.reason, NewConnectionError)


def _urllib3_cause(exc: Exception) -> Exception:
    cause = exc.args[0] if exc.args else exc
    return cause.reason if isinstance(cause, MaxRetryError) and cause.reason else exc


def pooled_session() -> requests.Session:
    session = requests.Session()
    # Retries are ours (above), so the adapter never retries on its own.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "image-gateway/1.0"
    # No proxy variables or ~/.netrc to look up on every call: the function talks to one upstream.
    session.trust_env = False
    return session
