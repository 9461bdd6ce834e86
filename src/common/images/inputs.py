"""The rules an image URL of a JSON edit must meet, checked before anything is reserved or sent.

The same rules guard the fetcher (`images/fetch.py`) when the gateway downloads a URL itself, so a
URL is refused up front for exactly the reasons the fetcher would refuse it: not https, user
name or password, whitespace or control characters, a host that is not a valid name, a literal
address or name that is internal (loopback, private, link-local, metadata, `localhost`), or a
`data:` URL whose bytes are not a PNG, JPEG or WebP that decodes. Names that resolve to internal
addresses can only be caught by resolving them, which the fetcher does when it fetches.

Light on purpose (no requests, no sockets): the JSON edit path imports it on every request.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from common.errors import ApiError
from common.images.imagetypes import MAX_SIDE, ImageInfo, describe_image

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]

MAX_INPUT_BYTES = 20 * 1024 * 1024  # per image fetched or decoded from a data URL
DATA_URL_TYPES = {"image/png", "image/jpeg", "image/jpg", "image/webp"}
_SHARED_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix embeds an IPv4 address
_HOST_RE = re.compile(r"^[a-z0-9_.-]+$")  # after IDNA: nothing that could break a Host header
_NUMERIC_HOST_RE = re.compile(r"^[0-9a-fx.]+$")  # 2130706433, 0x7f.1, 017700000001: inet_aton forms
# RFC 6761 names that never leave the machine, whatever DNS says.
_LOCAL_NAMES = ("localhost", ".localhost", "localhost.", ".localhost.")


def refusal(message: str, param: str, code: str = "invalid_image_url") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def networks(cidrs: Sequence[str]) -> Networks:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]


def format_size(n: int) -> str:
    for unit, size in (("MB", 1024 * 1024), ("KB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def address_problem(ip: IPAddress) -> str | None:
    """Why `ip` must not be contacted, or None. Embedded IPv4 addresses are judged first, so
    `::ffff:127.0.0.1` is refused as loopback rather than as an odd IPv6 address."""
    candidates: list[IPAddress] = []
    if isinstance(ip, ipaddress.IPv6Address):
        candidates += [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
        if ip.teredo:
            candidates += list(ip.teredo)
        if ip in _NAT64:
            candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    for candidate in [*candidates, ip]:
        if candidate.is_loopback:
            return "a loopback address"
        if candidate.is_link_local:
            return "a link-local address"
        if candidate.is_multicast:  # checked explicitly: some multicast ranges count as "global"
            return "a multicast address"
        if candidate.is_unspecified or candidate in _THIS_NETWORK:
            return "an unspecified address"
        if candidate in _SHARED_SPACE:
            return "a shared (carrier-grade NAT) address"
        if candidate.is_reserved:  # before is_private: 240/4 is both, "reserved" is the truth
            return "a reserved address"
        if candidate.is_private:
            return "a private address"
        if not candidate.is_global:
            return "an address that is not publicly routable"
    return None


def is_allowed(ip: IPAddress, allowed: Networks) -> bool:
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return any(ip in net or (mapped is not None and mapped in net) for net in allowed)


@dataclass(frozen=True)
class Target:
    host: str  # IDNA-encoded lower-case name or IP literal (no brackets)
    port: int
    path: str  # path and query, as sent on the request line
    name: str  # the URL path's last segment, for a filename

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"

    @property
    def literal(self) -> IPAddress | None:
        """The address a host written as a number stands for, without DNS: resolvers also read the
        old numeric forms (`2130706433`, `0x7f.1`) as IPv4 addresses."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            pass
        if _NUMERIC_HOST_RE.match(self.host):
            try:
                return ipaddress.IPv4Address(socket.inet_aton(self.host))
            except OSError:
                return None
        return None


def parse_https_url(url: str, what: str, param: str) -> Target:
    """The parts of an https URL the gateway would connect to; `what` starts each message."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise refusal(f"{what} contains whitespace or control characters.", param)
    try:
        parts = urlsplit(url)
        port = 443 if parts.port is None else parts.port  # ValueError: not a number, > 65535
    except ValueError:
        raise refusal(f"{what} is not a valid URL.", param) from None
    if port == 0:
        raise refusal(f"{what} is not a valid URL.", param)
    if parts.scheme.lower() != "https":
        raise refusal(f"{what} is not allowed: only https URLs (or base64 data:image URLs) are allowed.", param)
    if "@" in parts.netloc:
        raise refusal(f"{what} must not contain a user name or password.", param)
    host = parts.hostname or ""
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            host = ""
        if not _HOST_RE.match(host):
            raise refusal(f"{what} does not have a valid host name.", param) from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(host=host, port=port, path=path, name=unquote(parts.path.rsplit("/", 1)[-1]))


def refuse_internal(target: Target, what: str, param: str, allowed: Networks) -> None:
    """Refuse a host that is internal without asking DNS: an address literal or a local name."""
    ip = target.literal
    problem = None
    if ip is not None and not is_allowed(ip, allowed):
        problem = address_problem(ip)
    elif ip is None and (target.host == "localhost" or target.host.endswith(_LOCAL_NAMES)):
        problem = "a loopback address"
    if problem:
        raise refusal(f"{what} has a host ({target.host}) that is {problem}; only publicly routable "
                      "addresses are fetched.", param)


def decode_data_url(url: str, param: str, max_bytes: int) -> tuple[bytes, ImageInfo]:
    """The image in a `data:image/...;base64,` URL, refused unless it is a PNG, JPEG or WebP whose
    header decodes."""
    header, comma, payload = url[5:].partition(",")
    fields = [f.strip().lower() for f in header.split(";")]
    if not comma or fields[0] not in DATA_URL_TYPES:
        raise refusal(f"The data URL in {param} must be data:image/png, image/jpeg or image/webp;base64,...", param)
    if fields[-1] != "base64":
        raise refusal(f"The data URL in {param} must be base64-encoded (;base64,).", param)
    too_large = refusal(f"The image in {param} is larger than {format_size(max_bytes)}.", param, "invalid_image")
    if len(payload) > 4 * (max_bytes // 3 + 1):
        raise too_large  # refused before decoding
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise refusal(f"The data URL in {param} is not valid base64.", param) from None
    if len(data) > max_bytes:
        raise too_large
    return data, checked_image(data, f"The image in {param}", param)


def checked_image(data: bytes, what: str, param: str, code: str = "invalid_image") -> ImageInfo:
    """The header of an input image, refused unless it decodes to dimensions an upstream takes."""
    info = describe_image(data)
    if info is None:
        raise refusal(f"{what} is not a PNG, JPEG or WebP image that can be decoded "
                      "(its bytes were checked, not its name).", param, code)
    if max(info.width, info.height) > MAX_SIDE:
        raise refusal(f"{what} is {info.size} pixels; each side must be at most {MAX_SIDE:,}.", param, code)
    return info


def check_mask(first: ImageInfo | None, mask: ImageInfo | None, param: str) -> None:
    """OpenAI's rule for the mask: a PNG with the dimensions of the (first) image it applies to.
    Checked when both are known here (uploads, data URLs)."""
    if mask is None:
        return
    if mask.content_type != "image/png":
        raise refusal("The mask must be a PNG image.", param, "invalid_image_format")
    if first is not None and (first.width, first.height) != (mask.width, mask.height):
        raise refusal(f"The mask is {mask.size} pixels but the image it applies to is {first.size}: "
                      "they must have the same dimensions.", param, "invalid_image")


def check_image_url(url: str, param: str, allowed: Networks, max_bytes: int = MAX_INPUT_BYTES) -> ImageInfo | None:
    """An `image_url` as a JSON edit may send it on: the dimensions of a data URL's image, None for
    an https URL (its image is only known once fetched)."""
    if url[:5].lower() == "data:":
        return decode_data_url(url, param, max_bytes)[1]
    what = f"The image URL in {param}"
    refuse_internal(parse_https_url(url, what, param), what, param, allowed)
    return None
