"""TAXII 1.x over HTTP(S): one place for TLS, proxies, authentication, timeouts and retries.

The client hands over a message and gets back a byte stream to parse; everything about the wire
lives here. Built on httpx (timeouts split into connect and read, proxies, client certificates,
gzip), with two things httpx leaves to us:

* TLS is configured explicitly: an ``ssl.SSLContext`` built from the caller's CA file (or with
  verification off) is passed to httpx, so neither SSL_CERT_FILE nor REQUESTS_CA_BUNDLE in the
  environment can override what the caller asked for. A client key encrypted with a password
  is loaded with that password (``ssl`` does this natively on Python 3.11).
* Retries: connection errors and HTTP 429/502/503/504 are retried with exponential backoff
  (``Options.retries`` times; a caller that retries on its own, like the feed poller, passes 0);
  a TAXII RETRY status is retried by the client, which knows about messages. A TLS handshake
  that fails the same way every time (the server answers in plain HTTP, its certificate does
  not verify, no protocol in common) is not retried: it is :attr:`TaxiiError.permanent`.

Errors are :class:`TransportError` with a message that names the URL and what came back.
"""

from __future__ import annotations

import base64
import io
import logging
import ssl
import sys
import time
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Final, cast
from urllib.parse import urlsplit

# httpx imports its own command-line tool (click, rich, pygments: about 10 MB of memory and a
# tenth of a second) whenever they are installed, and they are (feedgate's CLI uses click and
# rich). A module without `main` in its place makes httpx skip it, as it does when they are not
# installed; nothing of httpx's API is lost.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", types.ModuleType("httpx._main"))

import httpx

from feedgate import __version__
from feedgate.redaction import hide_url_credentials

from ._constants import (
    VID_TAXII_HTTP_10,
    VID_TAXII_HTTPS_10,
    VID_TAXII_SERVICES_10,
    VID_TAXII_SERVICES_11,
    VID_TAXII_XML_10,
    VID_TAXII_XML_11,
)


class TaxiiError(Exception):
    """Anything that went wrong talking TAXII; the message is one clear line.

    ``permanent`` says that the same request would fail the same way however often it is sent
    (the server refuses the credentials, the collection or the request itself): a poller that
    retries with backoff would only make the admin wait for the same error.
    """

    permanent: bool = False

    def __init__(self, message: str = "") -> None:
        # Messages name URLs, and a URL may carry credentials: they are masked here, once,
        # for every error of the client (and for what an HTTP library's error text says).
        super().__init__(hide_url_credentials(message))


class TransportError(TaxiiError):
    """The HTTP exchange failed: no connection, a timeout, TLS, an HTTP error status.

    ``http_status`` is the server's HTTP status when it answered with an error (404, say).
    """

    def __init__(
        self, message: str, *, permanent: bool = False, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.http_status = http_status


class NotTaxiiError(TaxiiError):
    """The server answered, but not with a TAXII message (an HTML page, an empty body, ...)."""


_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
# The request itself is refused: sending it again gets the same answer (TaxiiError.permanent).
_REFUSED_STATUSES: Final = frozenset({400, 404, 405, 406, 410, 411, 413, 414, 415, 501})
_SERVICES: Final = {
    VID_TAXII_XML_11: VID_TAXII_SERVICES_11,
    VID_TAXII_XML_10: VID_TAXII_SERVICES_10,
}


@dataclass(frozen=True, kw_only=True)
class Options:
    """How to reach a server. Every field has the safe default."""

    headers: Mapping[str, str] = field(default_factory=dict)
    username: str | None = None
    password: str | None = None
    #: OpenTAXII-style JWT: POST {"username", "password"} here, send "Bearer <token>" after.
    jwt_auth_url: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = None
    ca_cert: str | None = None
    verify_ssl: bool = True
    proxy_url: str | None = None
    #: Ignore HTTP(S)_PROXY from the environment too (cabby's "noproxy").
    ignore_env_proxy: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0


def ssl_context(options: Options) -> ssl.SSLContext:
    """The TLS context for ``options``; explicit settings win over the environment."""
    if options.verify_ssl:
        if options.ca_cert:
            context = ssl.create_default_context(cafile=options.ca_cert)
        else:
            import certifi

            context = ssl.create_default_context(cafile=certifi.where())
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.cert_file:
        try:
            context.load_cert_chain(
                options.cert_file, options.key_file or None, password=options.key_password
            )
        except ssl.SSLError as exc:
            raise TransportError(
                f"cannot load the client certificate {options.cert_file}"
                f"{' / key ' + options.key_file if options.key_file else ''}: {exc.reason or exc}"
                " (a wrong --key-password, or a key that does not match the certificate)"
            ) from None
        except OSError as exc:
            raise TransportError(f"cannot read the client certificate or key: {exc}") from None
    return context


class Transport:
    """Posts TAXII messages and returns the answers as streams."""

    def __init__(self, options: Options) -> None:
        self.options = options
        timeout = httpx.Timeout(
            options.read_timeout, connect=options.connect_timeout, pool=options.connect_timeout
        )
        self._http = httpx.Client(
            verify=ssl_context(options),
            proxy=options.proxy_url or None,
            timeout=timeout,
            follow_redirects=False,
            # proxies from the environment only when none is given and none is refused
            trust_env=options.proxy_url is None and not options.ignore_env_proxy,
        )
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    # -- authentication -----------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        options = self.options
        if options.jwt_auth_url:
            if self._token is None:
                self._token = self._fetch_token()
            return {"Authorization": f"Bearer {self._token}"}
        if options.username is not None:
            pair = f"{options.username}:{options.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        return {}

    def _fetch_token(self) -> str:
        url = self.options.jwt_auth_url or ""
        logging.getLogger("feedgate.taxii.requests").info(
            "Obtaining JWT token from %s", hide_url_credentials(url)
        )
        body = {"username": self.options.username or "", "password": self.options.password or ""}
        try:
            response = self._http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise TransportError(f"JWT authentication at {url} failed: {_describe(exc)}") from None
        if response.status_code != 200:
            raise TransportError(
                f"JWT authentication at {url} failed: HTTP {response.status_code}"
                " (wrong username or password?)"
            )
        try:
            token = response.json()["token"]
        except (ValueError, KeyError, TypeError):
            raise NotTaxiiError(f"JWT authentication at {url}: no token in the answer") from None
        if not isinstance(token, str):
            raise NotTaxiiError(f"JWT authentication at {url}: the token is not text")
        return token

    def forget_token(self) -> bool:
        """Drop a JWT so the next request fetches a fresh one; False if there was none."""
        had = self._token is not None
        self._token = None
        return had

    # -- exchange -------------------------------------------------------------------------------

    @contextmanager
    def post(self, url: str, body: bytes, version: str) -> Iterator[IO[bytes]]:
        """POST a TAXII message; yield the answer as a byte stream (read as it arrives)."""
        scheme = urlsplit(url).scheme
        headers = {
            "Content-Type": "application/xml",
            "Accept": "application/xml",
            "User-Agent": f"feedgate/{__version__}",
            "X-TAXII-Content-Type": version,
            "X-TAXII-Accept": version,
            "X-TAXII-Services": _SERVICES.get(version, VID_TAXII_SERVICES_11),
            "X-TAXII-Protocol": VID_TAXII_HTTPS_10 if scheme == "https" else VID_TAXII_HTTP_10,
            **self.options.headers,
        }
        attempt = 0
        while True:
            attempt += 1
            try:
                request = self._http.build_request(
                    "POST", url, content=body, headers={**headers, **self._auth_headers()}
                )
            except httpx.InvalidURL as exc:  # not an HTTPError: it would escape every caller
                shown = url if len(url) <= 200 else f"{url[:200]}... ({len(url)} characters)"
                raise TransportError(f"POST {shown}: not a usable URL: {exc}") from None
            try:
                response = self._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                refused = _tls_refusal(exc)
                if attempt <= self.options.retries and _retryable(exc) and not refused:
                    self._sleep(attempt)
                    continue
                raise TransportError(
                    f"POST {url} failed: {_describe(exc, self._http.timeout)}",
                    permanent=refused,
                ) from None
            if response.status_code in _RETRY_STATUSES and attempt <= self.options.retries:
                response.close()
                self._sleep(attempt, response.headers.get("Retry-After"))
                continue
            try:
                _check(response, url)
                yield cast(IO[bytes], _ResponseStream(response, url))
            finally:
                response.close()
            return

    def _sleep(self, attempt: int, retry_after: str | None = None) -> None:
        delay = self.options.backoff * (2 ** (attempt - 1))
        if retry_after and retry_after.strip().isdigit():
            delay = float(retry_after.strip())
        time.sleep(min(delay, self.options.max_backoff))


def _retryable(exc: httpx.HTTPError) -> bool:
    """Errors worth another try: the connection, not the request."""
    return isinstance(
        exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)
    )


#: OpenSSL's reasons for a handshake that fails the same way however often it is tried: the
#: answer is not TLS, the certificate does not verify (or ours is refused), no common protocol.
_TLS_REFUSALS: Final = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "CERTIFICATE_VERIFY_FAILED",
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    }
)


def _tls_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` (an httpx error) comes from a TLS handshake that would fail again the
    same way: an ``ssl.SSLError`` with one of :data:`_TLS_REFUSALS` somewhere in its causes
    (httpx wraps httpcore's error, which wraps the ``ssl`` one). A reset or an EOF mid-handshake
    is not among them: that can be a passing fault."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        if isinstance(cause, ssl.SSLError) and cause.reason in _TLS_REFUSALS:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _describe(exc: httpx.HTTPError, timeout: httpx.Timeout | None = None) -> str:
    """One line for an httpx error, naming what kind of failure it was (and the timeout that
    ran out: the admin can tell a dead server from one slower than the setting)."""
    connect = f" after {timeout.connect:g} s" if timeout and timeout.connect else ""
    read = f" of {timeout.read:g} s" if timeout and timeout.read else ""
    kinds: list[tuple[type[httpx.HTTPError], str]] = [
        (httpx.ConnectTimeout, f"connection timed out{connect}"),
        (httpx.ReadTimeout, f"no answer within the read timeout{read}"),
        (httpx.WriteTimeout, "sending timed out"),
        (httpx.PoolTimeout, "timed out waiting for a connection"),
        (httpx.ProxyError, "proxy error"),
        (httpx.ConnectError, "cannot connect"),
        (httpx.RemoteProtocolError, "the server broke the connection"),
        (httpx.ReadError, "the connection failed while reading"),
    ]
    label = next((text for kind, text in kinds if isinstance(exc, kind)), type(exc).__name__)
    detail = " ".join(str(exc).split())
    if "WRONG_VERSION_NUMBER" in detail:  # what OpenSSL says when the answer is not TLS
        detail += " (the server answers in plain HTTP, not HTTPS: connect without HTTPS)"
    return f"{label}: {detail}" if detail else label


_XML_TYPES: Final = ("application/xml", "text/xml", "application/taxii+xml")


def _check(response: httpx.Response, url: str) -> None:
    """Refuse, with what came back, an answer that is not a TAXII message."""
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    taxii_type = response.headers.get("X-TAXII-Content-Type", "")
    looks_xml = content_type in _XML_TYPES or content_type.endswith("+xml") or bool(taxii_type)
    if response.status_code == 200 and (looks_xml or not content_type):
        return
    if looks_xml and response.status_code in (400, 401, 403, 404, 405, 500):
        return  # some servers send their Status_Message with an error status: let it be read
    snippet = _snippet(response)
    status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    if response.status_code == 200:
        raise NotTaxiiError(
            f"{url} answered {content_type or 'without a content type'}, not a TAXII message"
            f"{': ' + snippet if snippet else ''}"
        )
    if response.status_code in (301, 302, 303, 307, 308):
        where = response.headers.get("Location", "?")
        raise TransportError(
            f"{url} redirects to {where}: {status} (not followed; use that URL)",
            permanent=True,
            http_status=response.status_code,
        )
    if response.status_code in (401, 403):
        raise TransportError(
            f"{url}: {status} (check the credentials)",
            permanent=True,
            http_status=response.status_code,
        )
    raise TransportError(
        f"{url}: {status}{': ' + snippet if snippet else ''}",
        permanent=response.status_code in _REFUSED_STATUSES,
        http_status=response.status_code,
    )


def _snippet(response: httpx.Response, limit: int = 120) -> str:
    try:
        data = response.read()[:2048]
    except httpx.HTTPError:
        return ""
    text = " ".join(data.decode("utf-8", "replace").split())
    if "<title>" in text.lower():
        start = text.lower().index("<title>") + 7
        end = text.lower().find("</title>", start)
        title = text[start : end if end > 0 else start + 80].strip()
        return f"an HTML page titled {title!r}"
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


class _ResponseStream(io.RawIOBase):
    """An httpx streaming response as a readable byte stream (decompressed, chunked or not)."""

    def __init__(self, response: httpx.Response, url: str) -> None:
        self._chunks = response.iter_bytes()
        self._url = url
        self._buffer = b""
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
            except httpx.HTTPError as exc:
                raise TransportError(
                    f"reading the answer from {self._url} failed after {self.bytes_read} bytes:"
                    f" {_describe(exc)}"
                ) from None
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        self.bytes_read += n
        return n
