"""A TAXII 1.0/1.1 client: discovery, collections, poll (with paging), inbox, subscriptions.

    client = TaxiiClient(host="otx.alienvault.com", use_https=True,
                         username="<API key>", password="x")
    for block in client.poll("user_AlienVault", uri="/taxii/poll"):
        ...

What it does that cabby does not, on purpose:

* Paging follows ``more``: a part is asked for only when the previous one said there is more,
  an empty part ends the poll even when a server keeps saying ``more``, and a hard cap on parts
  ends a server that never stops with a clear error instead of a loop.
* Answers are parsed as they stream in (a poll of any size keeps memory flat).
* A Status_Message becomes a :class:`StatusError` with its type and details; RETRY is waited
  for (its ESTIMATED_WAIT, bounded) and retried; an expired JWT is refreshed once.

Pure protocol code: no database, no files, no printing (the CLIs do that).
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Final
from urllib.parse import urljoin, urlsplit

from feedgate.redaction import hide_url_credentials
from feedgate.xml import XMLParseError

from . import messages as tm
from ._poll_hint import poll_not_found_hint
from ._transport import NotTaxiiError, Options, TaxiiError, Transport, TransportError
from ._writer import tag_name

#: One INFO line per request ("Sending Poll_Request to <url>", the line cabby logs) ...
requests_log = logging.getLogger("feedgate.taxii.requests")
#: ... and, at DEBUG, the messages themselves.
wire_log = logging.getLogger("feedgate.taxii.wire")

__all__ = [
    "NotTaxiiError",
    "StatusError",
    "TaxiiClient",
    "TaxiiError",
    "TransportError",
]

VERSIONS: Final = {"1.1": tm.VID_TAXII_XML_11, "1.0": tm.VID_TAXII_XML_10}
#: A server may keep saying ``more``; past this many parts the poll stops with an error.
MAX_PARTS: Final = 100_000
#: (connect, read) seconds when the caller gives no timeout: a silent server never hangs a poll.
DEFAULT_TIMEOUT: Final = (10.0, 60.0)
#: Seconds each discovery request of poll_not_found_hint may take.
HINT_TIMEOUT: Final = 5.0
#: The longest RETRY wait honoured before giving up.
MAX_RETRY_WAIT: Final = 300.0


class StatusError(TaxiiError):
    """The server answered with an error Status_Message."""

    def __init__(self, status: tm.StatusMessage, request: tm.Message | None = None) -> None:
        self.status = status
        self.status_type = status.status_type
        self.message = status.message or status.detail_text or ""
        self.details: dict[str, tuple[str, ...]] = {}
        for detail in status.details:
            self.details.setdefault(detail.name, ())
            self.details[detail.name] += (detail.value,)
        text = f"TAXII status {self.status_type}"
        if self.message:
            text += f": {' '.join(self.message.split())}"
        shown = [f"{name}={', '.join(values)}" for name, values in self.details.items()]
        if shown:
            text += f" ({'; '.join(shown)})"
        super().__init__(text)
        # NOT_FOUND answering a Poll_Fulfillment is of its result_id (a result set the server
        # has let expire): a fresh Poll_Request starts a new one, so it is worth a retry.
        expired = isinstance(request, tm.PollFulfillment) and self.status_type == tm.ST_NOT_FOUND
        self.permanent = self.status_type in _REFUSALS and not expired


#: Status types that refuse the request as such (its credentials, collection, message or query):
#: the same request gets the same answer (TaxiiError.permanent). FAILURE, NETWORK_ERROR, RETRY
#: and the asynchronous-poll statuses may pass.
_REFUSALS: Final = frozenset(
    {
        tm.ST_UNAUTHORIZED,
        tm.ST_DENIED,
        tm.ST_NOT_FOUND,
        tm.ST_BAD_MESSAGE,
        tm.ST_POLLING_UNSUPPORTED,
        tm.ST_UNSUPPORTED_MESSAGE,
        tm.ST_UNSUPPORTED_CONTENT,
        tm.ST_UNSUPPORTED_PROTOCOL,
        tm.ST_UNSUPPORTED_QUERY,
        tm.ST_DESTINATION_COLLECTION_ERROR,
    }
)


class TaxiiClient:
    """Talks to one TAXII 1.x server. Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        use_https: bool = False,
        discovery_path: str | None = None,
        version: str = "1.1",
        headers: Mapping[str, str] | None = None,
        username: str | None = None,
        password: str | None = None,
        jwt_auth_url: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        key_password: str | None = None,
        ca_cert: str | None = None,
        verify_ssl: bool = True,
        proxy_url: str | None = None,
        proxy_type: str | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = 3,
        max_parts: int = MAX_PARTS,
        keep_raw: bool = False,
    ) -> None:
        if version not in VERSIONS:
            raise ValueError(f"TAXII version must be 1.0 or 1.1, not {version!r}")
        self.version = version
        self.message_binding = VERSIONS[version]
        self.host = host
        self.port = port
        self.use_https = use_https
        self.discovery_path = discovery_path
        self.max_parts = max_parts
        #: raw XML of every answer (for tools that print it), when ``keep_raw``
        self.raw_responses: list[bytes] = []
        self._keep_raw = keep_raw
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        proxy = _proxy(proxy_url, proxy_type)
        no_proxy = bool(proxy_url) and proxy is None  # "noproxy": not even the environment's
        jwt_url = self._absolute(jwt_auth_url) if jwt_auth_url else None
        self._transport = Transport(
            Options(
                headers=dict(headers or {}),
                username=username,
                password=password,
                jwt_auth_url=jwt_url,
                cert_file=cert_file,
                key_file=key_file,
                key_password=key_password,
                ca_cert=ca_cert,
                verify_ssl=verify_ssl,
                proxy_url=proxy,
                ignore_env_proxy=no_proxy,
                connect_timeout=connect,
                read_timeout=read,
                retries=retries,
            )
        )

    # -- life cycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> TaxiiClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def transport_options(self) -> Options:
        """How this client reaches its server (credentials, TLS, proxy, timeouts)."""
        return self._transport.options

    # -- addresses ----------------------------------------------------------------------------

    def _absolute(self, uri: str) -> str:
        """``uri`` as a full URL: as given if it has a scheme, else against host/port."""
        if urlsplit(uri).scheme in ("http", "https"):
            return uri
        if not self.host:
            raise ValueError(f"{uri!r} is a path: give the host too (or a full URL)")
        scheme = "https" if self.use_https else "http"
        default = 443 if self.use_https else 80
        port = f":{self.port}" if self.port and self.port != default else ""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return urljoin(f"{scheme}://{host}{port}/", uri)

    def _service_url(self, service_type: str, uri: str | None) -> str:
        """The address of a service: ``uri`` when given, else the first one discovery lists."""
        if uri:
            return self._absolute(uri)
        if not self.discovery_path:
            raise ValueError(
                f"no address for the {service_type} service: give its path or URL,"
                " or a discovery path to find it"
            )
        for service in self.discover_services():
            if service.service_type == service_type and (
                not service.message_bindings or self.message_binding in service.message_bindings
            ):
                return self._absolute(service.address)
        raise TaxiiError(
            f"the server's discovery service lists no {service_type} service"
            f" for TAXII {self.version}"
        )

    def _new_id(self) -> str:
        """A message id our version allows (TAXII 1.0: digits only, or servers refuse it)."""
        return tm.new_message_id(self.message_binding)

    # -- exchange -----------------------------------------------------------------------------

    def _exchange(self, url: str, request: tm.Message) -> tm.Message:
        """Send a request, read the whole answer (small messages), handle RETRY and JWT."""
        body = request.to_xml()
        again = _Again(self._transport)
        while True:
            _log_request(url, request, body)
            with self._transport.post(url, body, self.message_binding) as stream:
                data = _read_all(stream)
            if wire_log.isEnabledFor(logging.DEBUG):
                wire_log.debug("Response:\n%s", data.decode("utf-8", "replace"))
            if self._keep_raw:
                self.raw_responses.append(data)
            answer = _parse(data, url)
            if isinstance(answer, tm.StatusMessage) and answer.status_type != tm.ST_SUCCESS:
                if again(answer):
                    continue
                raise StatusError(answer, request)
            return answer

    def _expect(self, answer: tm.Message, kind: type[tm.Message], url: str) -> None:
        if isinstance(answer, tm.StatusMessage):
            raise StatusError(answer)
        if not isinstance(answer, kind):
            raise NotTaxiiError(
                f"{url} answered with a {type(answer).__name__}, expected a {kind.__name__}"
            )

    # -- services -----------------------------------------------------------------------------

    def discover_services(self, uri: str | None = None) -> list[tm.ServiceInstance]:
        """The services the server offers (Discovery)."""
        url = self._absolute(uri or self.discovery_path or "")
        if not (uri or self.discovery_path):
            raise ValueError("no discovery path or URL given")
        request = tm.DiscoveryRequest(message_id=self._new_id(), version=self.message_binding)
        answer = self._exchange(url, request)
        self._expect(answer, tm.DiscoveryResponse, url)
        assert isinstance(answer, tm.DiscoveryResponse)
        return list(answer.service_instances)

    def get_collections(self, uri: str | None = None) -> list[tm.Collection]:
        """The collections (1.1) or feeds (1.0) the server has."""
        service = tm.SVC_COLLECTION_MANAGEMENT if self.version == "1.1" else tm.SVC_FEED_MANAGEMENT
        url = self._service_url(service, uri)
        request = tm.CollectionInformationRequest(
            message_id=self._new_id(), version=self.message_binding
        )
        answer = self._exchange(url, request)
        self._expect(answer, tm.CollectionInformationResponse, url)
        assert isinstance(answer, tm.CollectionInformationResponse)
        return list(answer.collections)

    def poll(
        self,
        collection_name: str,
        begin_date: datetime | None = None,
        end_date: datetime | None = None,
        subscription_id: str | None = None,
        inbox_service: tm.PushParameters | None = None,
        content_bindings: Sequence[str | tm.ContentBinding] | None = None,
        uri: str | None = None,
    ) -> Iterator[tm.ContentBlock]:
        """The content blocks of a collection in (begin, end], all parts, as they stream in."""
        url = self._service_url(tm.SVC_POLL, uri)
        request = self._poll_request(
            collection_name,
            begin_date,
            end_date,
            subscription_id,
            inbox_service,
            content_bindings,
            tm.RT_FULL,
        )
        part_request: tm.Message = request
        for part in itertools.count(1):
            self._check_part_cap(url, part)
            blocks, header = yield from self._poll_part(url, part_request)
            if not header.more or blocks == 0 or not header.result_id:
                return  # done; an empty part ends a poll whatever `more` says
            part_request = self._fulfilment(
                collection_name, header.result_id, header.result_part_number + 1
            )

    def poll_not_found_hint(
        self,
        error: BaseException,
        uri: str,
        *,
        check: str = "the poll path",
        timeout: float = HINT_TIMEOUT,
    ) -> str | None:
        """For an HTTP 404 from the poll service at ``uri``: one line that says to check
        ``check`` (the flag or field that set the path) and names the poll services a discovery
        request at the same host lists. None for any other error.

        Bounded (``timeout`` per request, a few requests, no retries), only to that host, and it
        never raises: the caller reports this line instead of the bare 404, or the 404 itself.
        """
        try:
            url = self._absolute(uri)
        except ValueError:
            return None
        return poll_not_found_hint(self, error, url, check=check, timeout=timeout)

    def _check_part_cap(self, url: str, part: int) -> None:
        """Stop a poll whose server never stops saying there is more."""
        if part > self.max_parts:
            raise TaxiiError(
                f"{url}: the server still says there is more after {self.max_parts} parts"
                " (stopping rather than looping forever)"
            )

    def _fulfilment(self, collection_name: str, result_id: str, part: int) -> tm.PollFulfillment:
        """The request for part ``part`` of a multi-part result."""
        return tm.PollFulfillment(
            message_id=self._new_id(),
            version=self.message_binding,
            collection_name=collection_name,
            result_id=result_id,
            result_part_number=part,
        )

    def poll_raw(
        self,
        collection_name: str,
        begin_date: datetime | None = None,
        end_date: datetime | None = None,
        subscription_id: str | None = None,
        content_bindings: Sequence[str | tm.ContentBinding] | None = None,
        uri: str | None = None,
    ) -> Iterator[bytes]:
        """Each part of a poll as the server sent it: a whole Poll_Response document.

        For readers that parse the response themselves (the feed poller hands each part to the
        STIX reader, which reads Poll_Responses): one parse instead of two. Paging follows the
        same rules as :meth:`poll`; a Status_Message is raised as :class:`StatusError`. Memory
        holds one part (the server's page size), not the poll.
        """
        url = self._service_url(tm.SVC_POLL, uri)
        request: tm.Message = self._poll_request(
            collection_name, begin_date, end_date, subscription_id, None, content_bindings,
            tm.RT_FULL,
        )  # fmt: skip
        for part in itertools.count(1):
            self._check_part_cap(url, part)
            data = self._exchange_raw(url, request)
            root = _ROOT_NAME.search(data, 0, 4096)
            start = root.start() if root is not None else 0
            head = dict(_ROOT_ATTRS.findall(data[start : data.find(b">", start) + 1]))
            yield data
            result_id = head.get(b"result_id", b"").decode("utf-8", "replace")
            if head.get(b"more") not in (b"true", b"1") or not result_id:
                return
            if not _BLOCK_START.search(data):
                return  # an empty part ends a poll whatever `more` says
            number = head.get(b"result_part_number", b"1").decode("ascii", "replace")
            request = self._fulfilment(
                collection_name, result_id, (int(number) if number.isdigit() else part) + 1
            )

    def _exchange_raw(self, url: str, request: tm.Message) -> bytes:
        """A poll part's bytes; Status_Messages handled as :meth:`_exchange` does."""
        body = request.to_xml()
        again = _Again(self._transport)
        while True:
            _log_request(url, request, body)
            with self._transport.post(url, body, self.message_binding) as stream:
                data = _read_poll_part(stream)
            root = _ROOT_NAME.search(data, 0, 4096)
            if root is not None and root.group(1) == b"Poll_Response":
                return data
            answer = _parse(data, url)
            if isinstance(answer, tm.StatusMessage) and answer.status_type != tm.ST_SUCCESS:
                if again(answer):
                    continue
                raise StatusError(answer, request)
            raise NotTaxiiError(
                f"{url} answered a poll with a {type(answer).__name__}, not a Poll_Response"
            )

    def _poll_part(
        self, url: str, request: tm.Message
    ) -> Generator[tm.ContentBlock, None, tuple[int, tm.PollResponse]]:
        """Yield one part's blocks as they arrive; return how many, and the part's header."""
        body = request.to_xml()
        again = _Again(self._transport)
        while True:
            _log_request(url, request, body)
            with self._transport.post(url, body, self.message_binding) as stream:
                recorder = _Recorder(stream) if self._keep_raw else None
                source: IO[bytes] = recorder if recorder is not None else stream  # type: ignore[assignment]
                try:
                    reader = tm.iter_poll_response(source)
                    if isinstance(reader, tm.StatusMessage):
                        status = reader
                    else:
                        count = 0
                        for block in reader:
                            count += 1
                            yield block
                        header = reader.header
                        wire_log.debug("Response: %d content blocks", count)
                        if recorder is not None:
                            self.raw_responses.append(recorder.data())
                        return count, header
                except (XMLParseError, tm.TAXIIMessageError) as exc:
                    raise NotTaxiiError(
                        f"{url} sent a poll answer that cannot be read: {exc}"
                    ) from None
            if again(status):
                continue
            raise StatusError(status)

    def _poll_request(
        self,
        collection_name: str,
        begin_date: datetime | None,
        end_date: datetime | None,
        subscription_id: str | None,
        inbox_service: tm.PushParameters | None,
        content_bindings: Sequence[str | tm.ContentBinding] | None,
        response_type: str,
    ) -> tm.PollRequest:
        bindings = tuple(_binding(b) for b in content_bindings or ())
        if self.version == "1.0":
            return tm.PollRequest(
                message_id=self._new_id(),
                version=self.message_binding,
                collection_name=collection_name,
                subscription_id=subscription_id,
                exclusive_begin_timestamp=begin_date,
                inclusive_end_timestamp=end_date,
                content_bindings=bindings,
            )
        parameters = None
        if subscription_id is None:
            parameters = tm.PollParameters(
                response_type=response_type,
                content_bindings=bindings,
                delivery_parameters=inbox_service,
            )
        return tm.PollRequest(
            message_id=self._new_id(),
            version=self.message_binding,
            collection_name=collection_name,
            subscription_id=subscription_id,
            exclusive_begin_timestamp=begin_date,
            inclusive_end_timestamp=end_date,
            poll_parameters=parameters,
        )

    def get_content_count(
        self,
        collection_name: str,
        begin_date: datetime | None = None,
        end_date: datetime | None = None,
        subscription_id: str | None = None,
        inbox_service: tm.PushParameters | None = None,
        content_bindings: Sequence[str | tm.ContentBinding] | None = None,
        uri: str | None = None,
    ) -> tm.RecordCount | None:
        """How many blocks a poll would return (COUNT_ONLY; TAXII 1.1)."""
        if self.version == "1.0":
            raise TaxiiError("content counts (COUNT_ONLY polls) need TAXII 1.1")
        url = self._service_url(tm.SVC_POLL, uri)
        request = self._poll_request(
            collection_name,
            begin_date,
            end_date,
            subscription_id,
            inbox_service,
            content_bindings,
            tm.RT_COUNT_ONLY,
        )
        answer = self._exchange(url, request)
        self._expect(answer, tm.PollResponse, url)
        assert isinstance(answer, tm.PollResponse)
        return answer.record_count

    def push(
        self,
        content: bytes | str,
        content_binding: str | tm.ContentBinding,
        subscription_id: str | None = None,
        uri: str | None = None,
        timestamp: datetime | None = None,
        collection_names: Sequence[str] | None = None,
    ) -> None:
        """Push one content block to an inbox service."""
        self.push_blocks(
            [
                tm.ContentBlock(
                    content_binding=_binding(content_binding),
                    content=content,
                    timestamp_label=timestamp,
                )
            ],
            subscription_id=subscription_id,
            uri=uri,
            collection_names=collection_names,
        )

    def push_blocks(
        self,
        blocks: Sequence[tm.ContentBlock],
        subscription_id: str | None = None,
        uri: str | None = None,
        collection_names: Sequence[str] | None = None,
    ) -> None:
        """Push several content blocks in one Inbox_Message."""
        url = self._service_url(tm.SVC_INBOX, uri)
        source = None
        if subscription_id:
            source = tm.SourceSubscription(
                collection_name=(collection_names or [""])[0],
                subscription_id=subscription_id,
                inclusive_end_timestamp=datetime.now(UTC) if self.version == "1.0" else None,
            )
        request = tm.InboxMessage(
            message_id=self._new_id(),
            version=self.message_binding,
            destination_collection_names=tuple(collection_names or ())
            if self.version == "1.1"
            else (),
            source_subscription=source,
            content_blocks=tuple(blocks),
        )
        answer = self._exchange(url, request)
        if not isinstance(answer, tm.StatusMessage):
            raise NotTaxiiError(f"{url} answered an inbox message with a {type(answer).__name__}")

    # -- subscriptions ------------------------------------------------------------------------

    def _manage(
        self,
        action: str,
        collection_name: str,
        subscription_id: str | None,
        uri: str | None,
        parameters: tm.SubscriptionParameters | None = None,
        push: tm.PushParameters | None = None,
    ) -> tm.ManageCollectionSubscriptionResponse:
        service = tm.SVC_COLLECTION_MANAGEMENT if self.version == "1.1" else tm.SVC_FEED_MANAGEMENT
        url = self._service_url(service, uri)
        request = tm.ManageCollectionSubscriptionRequest(
            message_id=self._new_id(),
            version=self.message_binding,
            collection_name=collection_name,
            action=action,
            subscription_id=subscription_id,
            subscription_parameters=parameters if self.version == "1.1" else None,
            push_parameters=push,
        )
        answer = self._exchange(url, request)
        self._expect(answer, tm.ManageCollectionSubscriptionResponse, url)
        assert isinstance(answer, tm.ManageCollectionSubscriptionResponse)
        return answer

    def subscribe(
        self,
        collection_name: str,
        count_only: bool = False,
        inbox_service: tm.PushParameters | None = None,
        content_bindings: Sequence[str | tm.ContentBinding] | None = None,
        uri: str | None = None,
    ) -> tm.ManageCollectionSubscriptionResponse:
        parameters = tm.SubscriptionParameters(
            response_type=tm.RT_COUNT_ONLY if count_only else tm.RT_FULL,
            content_bindings=tuple(_binding(b) for b in content_bindings or ()),
        )
        return self._manage(tm.ACT_SUBSCRIBE, collection_name, None, uri, parameters, inbox_service)

    def unsubscribe(
        self, collection_name: str, subscription_id: str, uri: str | None = None
    ) -> tm.ManageCollectionSubscriptionResponse:
        return self._manage(tm.ACT_UNSUBSCRIBE, collection_name, subscription_id, uri)

    def pause_subscription(
        self, collection_name: str, subscription_id: str, uri: str | None = None
    ) -> tm.ManageCollectionSubscriptionResponse:
        return self._manage(tm.ACT_PAUSE, collection_name, subscription_id, uri)

    def resume_subscription(
        self, collection_name: str, subscription_id: str, uri: str | None = None
    ) -> tm.ManageCollectionSubscriptionResponse:
        return self._manage(tm.ACT_RESUME, collection_name, subscription_id, uri)

    def get_subscription_status(
        self, collection_name: str, subscription_id: str | None = None, uri: str | None = None
    ) -> tm.ManageCollectionSubscriptionResponse:
        return self._manage(tm.ACT_STATUS, collection_name, subscription_id, uri)


class _Again:
    """Whether to send a request again after an error status: once after UNAUTHORIZED when a
    JWT can be refreshed, and after RETRY while the waits add up to at most MAX_RETRY_WAIT."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._refreshed = False
        self._waited = 0.0

    def __call__(self, status: tm.StatusMessage) -> bool:
        if status.status_type == tm.ST_UNAUTHORIZED and not self._refreshed:
            self._refreshed = True
            return self._transport.forget_token()  # an expired JWT: fetch a fresh one, once
        if status.status_type == tm.ST_RETRY:
            wait = float(status.estimated_wait or 1)
            if self._waited + wait <= MAX_RETRY_WAIT:
                time.sleep(wait)
                self._waited += wait
                return True
        return False


def _log_request(url: str, request: tm.Message, body: bytes) -> None:
    requests_log.info("Sending %s to %s", tag_name(request), hide_url_credentials(url))
    if wire_log.isEnabledFor(logging.DEBUG):
        wire_log.debug("Request:\n%s", body.decode("utf-8", "replace"))


def _binding(value: str | tm.ContentBinding) -> tm.ContentBinding:
    return value if isinstance(value, tm.ContentBinding) else tm.ContentBinding(binding_id=value)


def _proxy(url: str | None, kind: str | None) -> str | None:
    """A proxy URL; ``kind`` (http/https) only fills in a missing scheme, as cabby's flag did."""
    if not url or url.lower() == "noproxy":
        return None
    if "://" not in url:
        url = f"{kind or 'http'}://{url}"
    return url


_MAX_MESSAGE: Final = 64 * 1024**2


def _read_all(stream: IO[bytes]) -> bytes:
    """The whole answer (a raw stream's read() returns what one chunk gives: loop to the end)."""
    parts: list[bytes] = []
    size = 0
    while chunk := stream.read(256 * 1024):
        parts.append(chunk)
        size += len(chunk)
        if size > _MAX_MESSAGE:
            raise NotTaxiiError(
                f"a TAXII message over {_MAX_MESSAGE} bytes (only polls may be large)"
            )
    return b"".join(parts)


#: A poll part held whole by poll_raw: generous, yet bounded.
_MAX_PART: Final = 1024**3
_ROOT_NAME: Final = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_]+)[\s>/]")
_ROOT_ATTRS: Final = re.compile(rb'\s(more|result_id|result_part_number)\s*=\s*["\']([^"\']*)["\']')
_BLOCK_START: Final = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?Content_Block[\s>]")


def _read_poll_part(stream: IO[bytes]) -> bytes:
    parts: list[bytes] = []
    size = 0
    while chunk := stream.read(1024 * 1024):
        parts.append(chunk)
        size += len(chunk)
        if size > _MAX_PART:
            raise NotTaxiiError(f"a poll part over {_MAX_PART} bytes")
    return b"".join(parts)


def _parse(data: bytes, url: str) -> tm.Message:
    if not data.strip():
        raise NotTaxiiError(f"{url} sent an empty answer, not a TAXII message")
    try:
        return tm.parse(data)
    except (XMLParseError, tm.TAXIIMessageError) as exc:
        raise NotTaxiiError(f"{url} sent something that is not a TAXII message: {exc}") from None


class _Recorder:
    """A stream that keeps what was read (for ``keep_raw``)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._parts: list[bytes] = []

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._parts.append(data)
        return data

    def data(self) -> bytes:
        return b"".join(self._parts)
