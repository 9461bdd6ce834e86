"""The SSRF-safe image fetcher (common.fetch).

No traffic leaves the machine: a fake resolver maps test host names to chosen addresses (most are
refused before any connection is attempted, which `forbid_connections` enforces), and the success
paths talk to a local HTTPS server on 127.0.0.1 whose certificate names images.example.test.
"""
from __future__ import annotations

import base64
import datetime
import io
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3.util.connection
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from common.errors import ApiError
from common.images.fetch import FetchedImage, ImageFetcher
from common.images.imagetypes import sniff_image_type

HOST = "images.example.test"  # in the certificate
HOP = "hop.example.test"  # in the certificate, another name on the same server
UNLISTED = "unlisted.example.test"  # resolves to the server, but not in its certificate
INTERNAL = "internal.example.test"  # resolves to a private address
PARAM = "images[0].image_url"


def _image(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (2, 2), (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


PNG, JPEG, WEBP = _image("PNG"), _image("JPEG"), _image("WEBP")


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA and a server certificate for HOST and HOP (Python 3.13's strict X.509 checks want a
    real CA with key identifiers rather than a bare self-signed leaf)."""
    directory = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fetch test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST), x509.DNSName(HOP)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": directory / "ca.pem", "cert": directory / "cert.pem", "key": directory / "key.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return {name: str(path) for name, path in files.items()}


Route = Callable[[BaseHTTPRequestHandler], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is observable

    def log_message(self, *args: object) -> None:
        pass

    def handle(self) -> None:
        try:
            self.request.do_handshake()  # in this thread, so a refused certificate blocks nothing
        except (ssl.SSLError, OSError):
            return
        super().handle()

    def do_GET(self) -> None:
        server: TestServer = self.server.owner  # type: ignore[attr-defined]
        server.requests.append({"path": self.path, "headers": dict(self.headers), "peer": self.client_address})
        route = server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            reply(self, 404, b"not found", "text/plain")
        else:
            route(self)


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up mid-body are the point of several tests


class TestServer:
    __test__ = False

    def __init__(self, cert: str, key: str) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[dict] = []
        self.sni: list[str | None] = []
        self.stop = threading.Event()  # releases handlers that stall on purpose
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        self.httpd = _Quiet(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = HOST) -> str:
        return f"https://{host}:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(h: BaseHTTPRequestHandler, status: int = 200, body: bytes = PNG, content_type: str = "image/png",
          headers: tuple[tuple[str, str], ...] = ()) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    for name, value in headers:
        h.send_header(name, value)
    h.end_headers()
    h.wfile.write(body)


def redirect(location: str, status: int = 302) -> Route:
    return lambda h: reply(h, status, b"", "text/plain", (("Location", location),))


@pytest.fixture
def server(tls_files: dict[str, str]):
    srv = TestServer(tls_files["cert"], tls_files["key"])
    yield srv
    srv.close()


class FakeResolver:
    """Maps names to addresses without DNS; records every call. A value may be a list of answers
    per call (the last repeats), to model a name whose answer changes between lookups."""

    def __init__(self, answers: dict[str, list[str] | list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown test host")
        answer = self.answers[host]
        if answer and isinstance(answer[0], list):
            n = sum(1 for h, _ in self.calls if h == host)
            return answer[min(n, len(answer)) - 1]  # type: ignore[return-value]
        return answer  # type: ignore[return-value]


def local_resolver() -> FakeResolver:
    return FakeResolver({HOST: ["127.0.0.1"], HOP: ["127.0.0.1"], UNLISTED: ["127.0.0.1"], INTERNAL: ["10.0.0.7"]})


@pytest.fixture
def fetcher_for(tls_files: dict[str, str]):
    def make(resolver: FakeResolver | None = None, **kwargs: object) -> ImageFetcher:
        context = ssl.create_default_context(cafile=tls_files["ca"])
        return ImageFetcher(
            allowed_networks=["127.0.0.1/32"], resolver=resolver or local_resolver(), ssl_context=context,
            **kwargs,  # type: ignore[arg-type]
        )
    return make


@pytest.fixture
def forbid_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the fetcher tried to connect: {args}")
    monkeypatch.setattr(urllib3.util.connection, "create_connection", refuse)


def refusal(fetcher: ImageFetcher, url: str, **kwargs: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        fetcher.fetch(url, param=PARAM, **kwargs)  # type: ignore[arg-type]
    error = caught.value
    assert error.status == 400 and error.param == PARAM
    return error


# -- magic numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "expected"), [
    (PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp"),
    (b"GIF89a\x01\x00", None), (b"RIFF\x00\x00\x00\x00WAVEfmt ", None), (b"<html>", None), (b"", None),
])
def test_image_types_are_recognised_by_their_magic_numbers(data: bytes, expected: str | None) -> None:
    assert sniff_image_type(data) == expected


# -- URLs refused before any connection --------------------------------------------------------


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("100.64.0.1", "shared"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("240.0.0.1", "reserved"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"),
    ("2002:7f00:1::", "loopback"), ("64:ff9b::a9fe:a9fe", "link-local"), ("fc00::1", "private"),
])
def test_a_host_resolving_to_a_non_public_address_is_refused_before_connecting(
    forbid_connections: None, address: str, reason: str
) -> None:
    fetcher = ImageFetcher(resolver=FakeResolver({HOST: [address]}))
    error = refusal(fetcher, f"https://{HOST}/cat.png")
    assert error.code == "invalid_image_url"
    assert f"resolves to a{'n' if reason[0] in 'aeiou' else ''} {reason}" in error.message
    assert HOST in error.message


def test_a_host_with_one_public_and_one_private_address_is_refused(forbid_connections: None) -> None:
    fetcher = ImageFetcher(resolver=FakeResolver({HOST: ["93.184.216.34", "10.0.0.5"]}))
    assert "private address" in refusal(fetcher, f"https://{HOST}/cat.png").message


@pytest.mark.parametrize("url", [
    "https://[::1]/x.png", "https://127.0.0.1/x.png", "https://2130706433/x.png", "https://0x7f.1/x.png",
    "https://017700000001/x.png", "https://[::ffff:127.0.0.1]/x.png", "https://169.254.169.254/latest/meta-data/",
])
def test_literal_and_numeric_ip_hosts_are_refused_on_the_address_they_stand_for(
    forbid_connections: None, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    # The default resolver (getaddrinfo), held to numeric hosts so no DNS query can leave.
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: real(*a, **k, flags=socket.AI_NUMERICHOST))
    error = refusal(ImageFetcher(), url)
    assert error.code == "invalid_image_url" and ("is a" in error.message or "resolves to a" in error.message)


def test_the_allow_list_only_admits_addresses_inside_its_networks(forbid_connections: None) -> None:
    fetcher = ImageFetcher(allowed_networks=["10.0.0.0/8"], resolver=FakeResolver({HOST: ["192.168.1.1"]}))
    assert "private address" in refusal(fetcher, f"https://{HOST}/cat.png").message


@pytest.mark.parametrize(("url", "why"), [
    (f"http://{HOST}/cat.png", "only https"),
    ("file:///etc/passwd", "only https"),
    (f"ftp://{HOST}/cat.png", "only https"),
    (f"gopher://{HOST}:70/_GET", "only https"),
    (f"https://user:secret@{HOST}/cat.png", "user name or password"),
    (f"https://user@{HOST}/cat.png", "user name or password"),
    (f"https://{HOST}@127.0.0.1/cat.png", "user name or password"),
    ("https:///cat.png", "valid host name"),
    (f"https://{HOST}:99999/cat.png", "not a valid URL"),
    (f"https://{HOST}:0/cat.png", "not a valid URL"),
    (f"https://{HOST}/cat.png\r\nX-Injected: 1", "control characters"),
    ("https://bad!host.example/cat.png", "valid host name"),
])
def test_urls_that_are_not_plain_https_are_refused(forbid_connections: None, url: str, why: str) -> None:
    resolver = FakeResolver({HOST: ["93.184.216.34"]})
    error = refusal(ImageFetcher(resolver=resolver), url)
    assert error.code == "invalid_image_url" and why in error.message
    assert resolver.calls == []
    assert "secret" not in error.message


def test_the_default_port_is_443_and_refusals_name_the_host_but_not_the_query(forbid_connections: None) -> None:
    resolver = FakeResolver({HOST: ["10.0.0.1"]})
    error = refusal(ImageFetcher(resolver=resolver), f"https://{HOST}/a.png?X-Amz-Signature=topsecret")
    assert resolver.calls == [(HOST, 443)]
    assert HOST in error.message and "topsecret" not in error.message


def test_a_host_that_does_not_resolve_is_refused(forbid_connections: None) -> None:
    error = refusal(ImageFetcher(resolver=FakeResolver({})), f"https://{HOST}/a.png")
    assert error.code == "invalid_image_url" and "could not be resolved" in error.message


def test_a_fetcher_refuses_an_ssl_context_that_does_not_verify() -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    with pytest.raises(ValueError):
        ImageFetcher(ssl_context=context)


# -- data URLs ---------------------------------------------------------------------------------


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize(("data", "media_type", "extension"), [
    (PNG, "image/png", ".png"), (JPEG, "image/jpeg", ".jpg"), (JPEG, "image/jpg", ".jpg"),
    (WEBP, "image/webp", ".webp"),
])
def test_data_urls_are_decoded_locally(forbid_connections: None, data: bytes, media_type: str, extension: str) -> None:
    image = ImageFetcher(resolver=FakeResolver({})).fetch(data_url(data, media_type), param=PARAM, index=2)
    expected_type = "image/jpeg" if media_type == "image/jpg" else media_type
    assert image == FetchedImage(data=data, content_type=expected_type, filename=f"image-2{extension}")


def test_a_data_url_claiming_png_but_holding_jpeg_bytes_is_a_jpeg() -> None:
    image = ImageFetcher().fetch(data_url(JPEG, "image/png"), param=PARAM)
    assert image.content_type == "image/jpeg" and image.filename == "image-0.jpg"


@pytest.mark.parametrize(("url", "code", "why"), [
    ("data:image/png;base64,iVBORw0KGgo$$$", "invalid_image_url", "not valid base64"),
    ("data:image/png;base64,iVBORw0KGgo", "invalid_image_url", "not valid base64"),  # bad padding
    ("data:image/png;base64,iVBO Rw0K", "invalid_image_url", "not valid base64"),  # strict: no whitespace
    (data_url(b"just some text, not an image"), "invalid_image", "not a PNG, JPEG or WebP"),
    ("data:image/png,rawbytes", "invalid_image_url", "base64-encoded"),
    (data_url(PNG, "text/html"), "invalid_image_url", "must be data:image/png"),
    (data_url(b"GIF89a" + b"\x00" * 20, "image/gif"), "invalid_image_url", "must be data:image/png"),
    ("data:image/png;base64", "invalid_image_url", "must be data:image/png"),
])
def test_bad_data_urls_are_refused(url: str, code: str, why: str) -> None:
    error = refusal(ImageFetcher(), url)
    assert error.code == code and why in error.message


def test_a_data_url_over_the_size_cap_is_refused() -> None:
    fetcher = ImageFetcher(max_bytes=len(PNG) - 1)
    error = refusal(fetcher, data_url(PNG))
    assert error.code == "invalid_image" and f"larger than {len(PNG) - 1} bytes" in error.message
    huge = "data:image/png;base64," + "A" * (4 * 1024 * 1024)  # refused on its length, before decoding
    assert "larger than 1 MB" in refusal(ImageFetcher(max_bytes=1024 * 1024), huge).message


# -- over the network (a local HTTPS server) ---------------------------------------------------


def test_an_image_is_fetched_from_the_vetted_address_with_the_hostname_as_host_and_sni(
    server: TestServer, fetcher_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[object] = []
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: looked_up.append(host) or real(host, *a, **k))
    server.routes["/photos/cat.png"] = reply
    resolver = local_resolver()
    image = fetcher_for(resolver).fetch(server.url("/photos/cat.png?sig=abc"), param=PARAM)
    assert image == FetchedImage(data=PNG, content_type="image/png", filename="cat.png")
    seen = server.requests[-1]
    assert seen["path"] == "/photos/cat.png?sig=abc"
    assert seen["headers"]["Host"] == f"{HOST}:{server.port}"
    assert seen["headers"]["Accept-Encoding"] == "identity"
    assert seen["headers"]["User-Agent"].startswith("image-gateway-fetch/")
    assert server.sni == [HOST]
    assert resolver.calls == [(HOST, server.port)]
    assert HOST not in looked_up  # nothing resolved the name a second time


def test_the_connection_goes_to_the_first_answer_even_if_the_name_would_resolve_elsewhere_later(
    server: TestServer, fetcher_for
) -> None:
    # A rebinding name: public-looking (allowed) first, the metadata address afterwards.
    resolver = FakeResolver({HOST: [["127.0.0.1"], ["169.254.169.254"]], HOP: ["127.0.0.1"]})
    server.routes["/a.png"] = redirect(server.url("/b.png", host=HOP))
    server.routes["/b.png"] = redirect("/c.png")
    server.routes["/c.png"] = reply
    image = fetcher_for(resolver).fetch(server.url("/a.png"), param=PARAM)
    assert image.data == PNG
    assert resolver.calls == [(HOST, server.port), (HOP, server.port), (HOP, server.port)]  # once per hop
    assert [r["headers"]["Host"] for r in server.requests] == [f"{HOST}:{server.port}"] + [f"{HOP}:{server.port}"] * 2


def test_the_sniffed_type_wins_over_the_content_type_header(server: TestServer, fetcher_for) -> None:
    server.routes["/x.png"] = lambda h: reply(h, body=JPEG, content_type="image/png; charset=binary")
    image = fetcher_for().fetch(server.url("/x.png"), param=PARAM, index=3)
    assert (image.content_type, image.filename) == ("image/jpeg", "x.jpg")


def test_a_certificate_for_another_name_is_refused(server: TestServer, fetcher_for) -> None:
    server.routes["/x.png"] = reply
    error = refusal(fetcher_for(), server.url("/x.png", host=UNLISTED))
    assert error.code == "image_fetch_failed" and "certificate" in error.message
    assert server.requests == [] and server.sni == [UNLISTED]


def test_connections_are_pooled_per_hostname_and_address(server: TestServer, fetcher_for) -> None:
    server.routes["/x.png"] = reply
    fetcher = fetcher_for()
    for host in (HOST, HOST, HOP):
        fetcher.fetch(server.url("/x.png", host=host), param=PARAM)
    peers = [r["peer"] for r in server.requests]
    assert peers[0] == peers[1] and peers[2] != peers[0]
    assert server.sni == [HOST, HOP]


def test_a_redirect_to_a_private_address_is_refused(server: TestServer, fetcher_for) -> None:
    server.routes["/go"] = redirect(f"https://{INTERNAL}/secret.png")
    error = refusal(fetcher_for(), server.url("/go"))
    assert error.code == "invalid_image_url"
    assert "redirected" in error.message and "private address" in error.message and INTERNAL in error.message


def test_a_redirect_chain_longer_than_max_redirects_is_refused(server: TestServer, fetcher_for) -> None:
    server.routes["/loop"] = redirect("/loop", 301)
    error = refusal(fetcher_for(max_redirects=2), server.url("/loop"))
    assert "redirected more than 2 times" in error.message
    assert len(server.requests) == 3


def test_a_redirect_to_plain_http_is_refused(server: TestServer, fetcher_for) -> None:
    server.routes["/go"] = redirect(f"http://{HOST}:{server.port}/x.png", 307)
    error = refusal(fetcher_for(), server.url("/go"))
    assert error.code == "invalid_image_url" and "only https" in error.message
    assert len(server.requests) == 1


@pytest.mark.parametrize(("body", "content_type", "why"), [
    (b"<html>hello</html>", "text/html; charset=utf-8", "returned text/html"),
    (PNG, "application/octet-stream", "returned application/octet-stream"),
    (b"<html>hello</html>", "image/png", "is not a PNG, JPEG or WebP"),
])
def test_a_response_that_is_not_an_image_is_refused(
    server: TestServer, fetcher_for, body: bytes, content_type: str, why: str
) -> None:
    server.routes["/x.png"] = lambda h: reply(h, body=body, content_type=content_type)
    error = refusal(fetcher_for(), server.url("/x.png"))
    assert error.code == "invalid_image" and why in error.message


def test_an_error_status_is_refused_as_a_failed_fetch(server: TestServer, fetcher_for) -> None:
    error = refusal(fetcher_for(), server.url("/missing.png?signature=topsecret"))
    assert error.code == "image_fetch_failed" and "HTTP 404" in error.message
    assert HOST in error.message and "topsecret" not in error.message


def test_a_compressed_body_is_refused(server: TestServer, fetcher_for) -> None:
    server.routes["/x.png"] = lambda h: reply(h, headers=(("Content-Encoding", "gzip"),))
    assert "encoded" in refusal(fetcher_for(), server.url("/x.png")).message


def test_a_body_over_the_cap_is_refused_without_reading_it_all(server: TestServer, fetcher_for) -> None:
    total, done = 64 * 1024 * 1024, threading.Event()
    written = [0]

    def stream(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Connection", "close")  # no Content-Length: only the streaming cap can stop it
        h.end_headers()
        chunk = PNG + b"\x00" * (64 * 1024 - len(PNG))
        try:
            while written[0] < total:
                h.wfile.write(chunk)
                written[0] += len(chunk)
        finally:
            done.set()

    server.routes["/big.png"] = stream
    started = time.monotonic()
    error = refusal(fetcher_for(max_bytes=100_000), server.url("/big.png"))
    assert error.code == "image_fetch_failed" and "larger than 100000 bytes" in error.message
    assert time.monotonic() - started < 2
    assert done.wait(5)
    assert written[0] < total


def test_a_content_length_over_the_cap_is_refused_before_reading(server: TestServer, fetcher_for) -> None:
    def announce(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Content-Length", str(30 * 1024 * 1024))
        h.end_headers()
        h.wfile.write(PNG)
        server.stop.wait(10)  # never sends the rest: reading would hang until the timeout

    server.routes["/big.png"] = announce
    started = time.monotonic()
    error = refusal(fetcher_for(timeout_seconds=5), server.url("/big.png"))
    assert error.code == "image_fetch_failed" and "larger than 20 MB" in error.message
    assert time.monotonic() - started < 1


def test_a_server_that_does_not_answer_is_refused_after_the_timeout(server: TestServer, fetcher_for) -> None:
    server.routes["/slow.png"] = lambda h: server.stop.wait(10)
    started = time.monotonic()
    error = refusal(fetcher_for(timeout_seconds=0.5), server.url("/slow.png"))
    elapsed = time.monotonic() - started
    assert error.code == "image_fetch_failed" and "within 0.5 seconds" in error.message
    assert 0.4 < elapsed < 1.5


@pytest.mark.parametrize("framing", [("Connection", "close"), ("Content-Length", "1000000")])
def test_a_server_dripping_the_body_is_cut_off_at_the_overall_timeout(
    server: TestServer, fetcher_for, framing: tuple[str, str]
) -> None:
    # Close-delimited and length-delimited bodies reach the socket by different paths.
    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header(*framing)
        h.end_headers()
        h.wfile.write(PNG[:8])
        while not server.stop.wait(0.7):  # each byte inside a per-read timeout of 1 s
            h.wfile.write(b"\x00")
            h.wfile.flush()

    server.routes["/drip.png"] = drip
    started = time.monotonic()
    error = refusal(fetcher_for(timeout_seconds=1), server.url("/drip.png"))
    assert "within 1 seconds" in error.message
    # Per-read timeouts alone would wait for the byte at 1.4 s; the overall budget stops at 1 s.
    assert 0.9 < time.monotonic() - started < 1.25


def test_the_callers_deadline_cuts_the_timeout_short(server: TestServer, fetcher_for) -> None:
    server.routes["/slow.png"] = lambda h: server.stop.wait(10)
    started = time.monotonic()
    error = refusal(fetcher_for(timeout_seconds=5), server.url("/slow.png"), deadline=started + 0.3)
    assert error.code == "image_fetch_failed" and "within 0.3 seconds" in error.message
    assert time.monotonic() - started < 0.9


def test_no_cookies_are_kept_and_no_proxy_is_taken_from_the_environment(
    server: TestServer, fetcher_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    server.routes["/x.png"] = lambda h: reply(h, headers=(("Set-Cookie", "session=abc; Path=/"),))
    fetcher = fetcher_for()
    fetcher.fetch(server.url("/x.png"), param=PARAM)
    fetcher.fetch(server.url("/x.png"), param=PARAM)
    assert "Cookie" not in server.requests[1]["headers"]


# -- hosts that close the connection after the body --------------------------------------------


def _closing(protocol: str) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.protocol_version = protocol  # HTTP/1.0, or 1.1 with Connection: close: the body ends the connection
        h.close_connection = True
        reply(h, headers=(("Connection", "close"),))
    return route


@pytest.mark.parametrize("protocol", ["HTTP/1.0", "HTTP/1.1"])
def test_an_image_from_a_host_that_closes_the_connection_after_the_body_is_fetched(
        server: TestServer, fetcher_for, protocol: str) -> None:
    server.routes["/closing.png"] = _closing(protocol)
    fetcher = fetcher_for()

    for _ in range(2):  # and again: no dead connection is reused
        fetched = fetcher.fetch(server.url("/closing.png"), param=PARAM, index=0, deadline=time.monotonic() + 5)
        assert fetched.data == PNG and fetched.content_type == "image/png"
