"""SSRF-safe download of customer-supplied image URLs (`images[].image_url`, `mask.image_url`).

A Lambda can reach its runtime API on loopback and everything in its VPC, so a URL chosen by a
customer is only fetched when every address its host resolves to is public, the connection goes
to the address that was checked (never to a second DNS answer: no rebinding), redirects are
followed by hand with the same checks, and bytes and time are capped. `data:` URLs are decoded
locally. Every refusal is an `ApiError(400, ..., param=<the request field>)`; messages name the
host at most, never the URL's query string (it may carry a signature).
"""
from __future__ import annotations

import http.cookiejar
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin

import certifi
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError

from common.errors import ApiError
from common.images.inputs import (
    DATA_URL_TYPES,
    MAX_INPUT_BYTES,
    IPAddress,
    Target,
    address_problem,
    checked_image,
    decode_data_url,
    format_size,
    is_allowed,
    networks,
    parse_https_url,
    refuse_internal,
    refusal,
)

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024
_USER_AGENT = "image-gateway-fetch/1.0"
_SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    content_type: str  # "image/png" | "image/jpeg" | "image/webp", from the bytes, not a header
    filename: str


def _system_resolver(host: str, port: int) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@dataclass(frozen=True)
class _Budget:
    """The time left for one fetch, all hops included."""

    end: float  # time.monotonic() value
    seconds: float  # the whole budget, for messages

    def remaining(self) -> float:
        return self.end - time.monotonic()


def _tls_name(host_header: str) -> str:
    """The host of a Host header (what SNI and the certificate check must use)."""
    if host_header.startswith("["):
        return host_header[1 : host_header.index("]")]
    return host_header.rsplit(":", 1)[0] if ":" in host_header else host_header


def _response_socket(raw: object) -> socket.socket | None:
    """The socket under a streamed response. http.client detaches it from the connection when the
    body is close-delimited, so fall back to the response's file (CPython's SocketIO keeps it as
    `_sock`). None if neither is there: the deadline is then checked between reads only."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is None:
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


class _PinnedAddressAdapter(HTTPAdapter):
    """Connects to the IP literal in the request URL (the vetted address) while speaking TLS to the
    name in the Host header: SNI and certificate verification use that name, through urllib3's
    `server_hostname` pool keyword. `server_hostname` is part of urllib3's pool key, so pools are
    per (ip, port, hostname) and a connection is never reused for another name."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl_context = ssl_context
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):  # type: ignore[no-untyped-def]
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        pool_kwargs["ssl_context"] = self._ssl_context
        # Not `assert_hostname`: urllib3 would switch off `check_hostname` on the (shared) context
        # and match in Python; with only server_hostname, OpenSSL checks the name in the handshake.
        pool_kwargs["server_hostname"] = _tls_name(request.headers["Host"])
        return host_params, pool_kwargs

    def cert_verify(self, conn, url, verify, cert) -> None:  # type: ignore[no-untyped-def]
        # The context carries the trust store; requests would otherwise point `ca_certs` at its
        # bundle and urllib3 would load that into our context.
        conn.cert_reqs = "CERT_REQUIRED"


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie, request):  # type: ignore[no-untyped-def]
        return False

    def return_ok(self, cookie, request):  # type: ignore[no-untyped-def]
        return False


class ImageFetcher:
    def __init__(
        self,
        *,
        max_bytes: int = MAX_INPUT_BYTES,
        timeout_seconds: float = 10.0,
        max_redirects: int = 3,
        allowed_networks: Sequence[str] = (),
        resolver: Callable[[str, int], list[str]] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self.max_redirects = max_redirects
        self._allowed = networks(allowed_networks)
        self._resolve = resolver or _system_resolver
        context = ssl_context or ssl.create_default_context(cafile=certifi.where())
        if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
            raise ValueError("ImageFetcher needs an ssl_context that verifies certificates and hostnames")
        session = requests.Session()
        session.trust_env = False  # no *_PROXY, netrc or CA bundle from the environment
        session.cookies.set_policy(_NoCookies())
        session.headers.clear()
        # identity: the byte cap applies to what is on the wire, no decompression bombs.
        session.headers.update(
            {"User-Agent": _USER_AGENT, "Accept": "image/png, image/jpeg, image/webp", "Accept-Encoding": "identity"}
        )
        session.adapters.clear()  # no plain-http adapter at all
        session.mount("https://", _PinnedAddressAdapter(context))
        self._session = session

    def fetch(self, url: str, *, param: str, index: int = 0, deadline: float | None = None) -> FetchedImage:
        if url[:5].lower() == "data:":
            return self._image(decode_data_url(url, param, self.max_bytes)[0], "", param, index)
        now = time.monotonic()
        end = now + self.timeout_seconds if deadline is None else min(now + self.timeout_seconds, deadline)
        budget = _Budget(end=end, seconds=max(end - now, 0.0))
        what = f"The image URL in {param}"
        for _hop in range(self.max_redirects + 1):
            target = parse_https_url(url, what, param)
            refuse_internal(target, what, param, self._allowed)  # before DNS: literals and local names
            ip = self._vet(target, what, param)
            response = self._send(target, ip, budget, param)
            try:
                if response.status_code in _REDIRECT_STATUSES and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    what = f"The image URL in {param} redirected to a URL that"
                    continue
                return self._read_image(response, target, budget, param, index)
            finally:
                response.close()
        raise self._refuse(f"The image URL in {param} redirected more than {self.max_redirects} times.", param)

    # -- URL and address checks ------------------------------------------------------------------

    @staticmethod
    def _refuse(message: str, param: str, code: str = "invalid_image_url") -> ApiError:
        return refusal(message, param, code)

    def _vet(self, target: Target, what: str, param: str) -> IPAddress:
        """Resolve once, refuse if any answer is off limits, and return the address to connect to."""
        try:
            answers = [ipaddress.ip_address(a.split("%", 1)[0]) for a in self._resolve(target.host, target.port)]
        except (OSError, UnicodeError, ValueError):
            answers = []
        if not answers:
            raise self._refuse(f"{what} has a host ({target.host}) that could not be resolved.", param)
        for ip in answers:
            problem = None if is_allowed(ip, self._allowed) else address_problem(ip)
            if problem:
                # Any bad answer refuses the host: the address used must not depend on DNS luck.
                raise self._refuse(
                    f"{what} has a host ({target.host}) that resolves to {problem}; "
                    "only publicly routable addresses are fetched.",
                    param,
                )
        # IPv4 first: Lambda functions outside dual-stack VPCs have no IPv6 egress.
        return sorted(answers, key=lambda ip: ip.version)[0]

    # -- network ---------------------------------------------------------------------------------

    def _timed_out(self, target: Target, budget: _Budget, param: str) -> ApiError:
        return self._refuse(
            f"The image at {target.host} could not be downloaded within {round(budget.seconds, 1):g} seconds.",
            param,
            "image_fetch_failed",
        )

    def _send(self, target: Target, ip: IPAddress, budget: _Budget, param: str) -> requests.Response:
        remaining = budget.remaining()
        if remaining <= 0:
            raise self._timed_out(target, budget, param)
        literal = f"[{ip}]" if ip.version == 6 else str(ip)
        try:
            return self._session.get(
                f"https://{literal}:{target.port}{target.path}",
                headers={"Host": target.host_header},
                stream=True,
                allow_redirects=False,
                timeout=(remaining, remaining),
            )
        except requests.exceptions.SSLError:
            message = f"The image host {target.host} did not present a valid TLS certificate for its name."
        except requests.Timeout:
            raise self._timed_out(target, budget, param) from None
        except requests.RequestException:
            message = f"The image host {target.host} could not be reached."
        raise self._refuse(message, param, "image_fetch_failed")

    def _read_image(
        self, response: requests.Response, target: Target, budget: _Budget, param: str, index: int
    ) -> FetchedImage:
        failed = "image_fetch_failed"
        if response.status_code != 200:
            raise self._refuse(f"The image host {target.host} answered HTTP {response.status_code}.", param, failed)
        declared = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if declared not in DATA_URL_TYPES:
            shown = re.sub(r"[^\w/.+-]", "", declared)[:60] or "no content type"
            raise self._refuse(
                f"The image URL in {param} returned {shown}, not a PNG, JPEG or WebP image.", param, "invalid_image"
            )
        if response.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            raise self._refuse(f"The image host {target.host} sent an encoded (compressed) body.", param, failed)
        too_large = self._refuse(
            f"The image at {target.host} is larger than {format_size(self.max_bytes)}.", param, failed
        )
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise too_large  # refused before reading a byte of the body
        raw = response.raw
        # Per-recv timeouts alone would let a server drip one byte per timeout forever: before each
        # read the socket's timeout is cut to what is left of the overall budget.
        sock = _response_socket(raw)
        body = bytearray()
        while True:
            remaining = budget.remaining()
            if remaining <= 0:
                raise self._timed_out(target, budget, param)
            # http.client closes a close-delimited (Connection: close, HTTP/1.0) connection as soon as
            # it has read the body's last byte: a closed socket has no timeout to cut.
            if sock is not None and sock.fileno() != -1:
                sock.settimeout(remaining)
            try:
                chunk = raw.read1(_CHUNK, decode_content=False)
            except (ReadTimeoutError, TimeoutError):
                raise self._timed_out(target, budget, param) from None
            except (Urllib3Error, OSError):
                raise self._refuse(f"The download from {target.host} was interrupted.", param, failed) from None
            if not chunk:
                break
            body += chunk
            if len(body) > self.max_bytes:
                raise too_large  # stop reading: the connection is closed, not drained
        raw.release_conn()  # fully read: the connection can serve the next image from this host
        return self._image(bytes(body), target.name, param, index)

    # -- bytes -----------------------------------------------------------------------------------

    def _image(self, data: bytes, name: str, param: str, index: int) -> FetchedImage:
        info = checked_image(data, f"The image in {param}", param)
        stem = name.rsplit(".", 1)[0] if "." in name else name
        if not _SAFE_NAME_RE.match(name) or not stem:
            stem = f"image-{index}"
        return FetchedImage(data=data, content_type=info.content_type, filename=stem + _EXTENSIONS[info.content_type])
