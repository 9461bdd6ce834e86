"""Calls to the upstream image API (OpenAI or compatible) and the mapping of its answers.

- One pooled `requests.Session` per container; the platform's key from Secrets Manager (cached),
  never the customer's token, goes in `Authorization`.
- Retries follow urllib3's `Retry` policy (which statuses, how many, backoff, `Retry-After`),
  but only while the function's deadline allows another full attempt, and never after the
  request may have reached the upstream (read timeout, dropped connection): a generation may
  already be billed upstream, and a second one would be billed twice.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, MaxRetryError, NewConnectionError
from urllib3.util.retry import Retry

from common.errors import ApiError, upstream_error, upstream_timeout

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CONNECT_TIMEOUT_SECONDS = 3.05
# A retry is only worth starting if at least this much time is left for it.
MIN_ATTEMPT_SECONDS = 2.0
POLICY = Retry(
    total=2, connect=2, read=0, status=2, other=0, redirect=0, allowed_methods=None,
    status_forcelist=RETRY_STATUSES, backoff_factor=0.5, backoff_max=8, respect_retry_after_header=True,
    raise_on_status=False,
)


@dataclass(frozen=True)
class UpstreamReply:
    status: int
    headers: Any  # requests' case-insensitive dict
    content: bytes
    elapsed_ms: int

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError:
            return None


class Upstream:
    def __init__(self, base_url: str, api_key: Callable[[], str], session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.session = session or _pooled_session()

    def post(self, path: str, *, deadline: float, json_body: Any = None, data: Any = None,
             files: Any = None) -> UpstreamReply:
        """POST with bounded retries; `deadline` is a time.monotonic() value."""
        url = f"{self.base_url}{path}"
        headers = {"Authorization": f"Bearer {self._api_key()}", "Accept": "application/json, text/event-stream"}
        policy = POLICY.new()
        started = time.monotonic()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise upstream_timeout(time.monotonic() - started)
            try:
                response = self.session.post(
                    url, json=json_body, data=data, files=files, headers=headers,
                    timeout=(min(CONNECT_TIMEOUT_SECONDS, remaining), remaining),
                )
            except requests.exceptions.ConnectTimeout as exc:
                policy = self._next_try(policy, url, deadline, error=exc)
                continue
            except requests.exceptions.ReadTimeout:
                raise upstream_timeout(time.monotonic() - started) from None
            except requests.exceptions.ConnectionError as exc:
                if not _never_sent(exc):
                    # The request may be in progress upstream: retrying could generate (and bill) twice.
                    raise upstream_error("The connection to the image service was lost. You have not been charged.") from None
                policy = self._next_try(policy, url, deadline, error=exc)
                continue
            reply = UpstreamReply(response.status_code, response.headers, response.content,
                                  int((time.monotonic() - started) * 1000))
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
            raise upstream_error("The image service could not be reached. You have not been charged.") from None
        wait = _retry_after(policy, response) if response is not None else None
        wait = policy.get_backoff_time() if wait is None else wait
        if time.monotonic() + wait + MIN_ATTEMPT_SECONDS > deadline:
            if response is not None:
                raise _GiveUp()
            raise upstream_error("The image service could not be reached. You have not been charged.")
        time.sleep(wait)
        return policy


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


def _pooled_session() -> requests.Session:
    session = requests.Session()
    # Retries are ours (above), so the adapter never retries on its own.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "image-gateway/1.0"
    # No proxy variables or ~/.netrc to look up on every call: the function talks to one upstream.
    session.trust_env = False
    return session


def error_from_reply(reply: UpstreamReply) -> ApiError:
    """Map an unsuccessful upstream answer to what the customer sees."""
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    headers = {}
    if reply.headers.get("x-request-id"):
        headers["x-upstream-request-id"] = reply.headers["x-request-id"]
    if reply.status in (401, 403):
        # The platform's own key was refused: not the customer's fault, and not their key.
        return ApiError(502, "The gateway could not authenticate with the image service. Please contact the platform.",
                        type="server_error", code="upstream_auth_error", headers=headers)
    if reply.status == 429 and isinstance(error, dict) and error.get("code") == "insufficient_quota":
        # The platform's own upstream account is out of credit: the customer's balance is fine.
        return ApiError(503, "The image service is temporarily unavailable on this platform. You have not been charged.",
                        type="server_error", code="upstream_unavailable", headers=headers)
    if 400 <= reply.status < 500 and isinstance(error, dict) and isinstance(error.get("message"), str):
        if reply.status == 429 and reply.headers.get("retry-after"):
            headers["retry-after"] = reply.headers["retry-after"]
        full = {"error": {"message": error["message"], "type": error.get("type") or "invalid_request_error",
                          "param": error.get("param"), "code": error.get("code"),
                          **{k: v for k, v in error.items() if k not in ("message", "type", "param", "code")}}}
        return ApiError(reply.status, error["message"], type=full["error"]["type"], param=error.get("param"),
                        code=error.get("code"), headers=headers, body=full)
    return ApiError(502, f"The image service failed (HTTP {reply.status}). You have not been charged; please retry.",
                    type="server_error", code="upstream_error", headers=headers)


def rejects_parameter(reply: UpstreamReply, name: str) -> bool:
    """Did the upstream refuse the request because of this parameter?"""
    if reply.status != 400:
        return False
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False
    return error.get("param") == name or (
        error.get("code") in ("unknown_parameter", "unsupported_parameter") and f"'{name}'" in str(error.get("message")))


def rejects_json_form(reply: UpstreamReply) -> bool:
    """Did the upstream refuse a JSON edit (it only takes multipart uploads)?"""
    return reply.status == 415 or rejects_parameter(reply, "images")


@lru_cache(maxsize=1)
def get_upstream() -> Upstream:
    from aws_lambda_powertools.utilities import parameters

    from common.config import get_settings

    settings = get_settings()
    # Cached for 5 minutes per container: a rotated key is picked up without a redeploy.
    return Upstream(settings.upstream_base_url,
                    lambda: parameters.get_secret(settings.upstream_api_key_secret_id, max_age=300))
