"""The hub's TAXII 1.1 services, shaped like OTX's: discovery, collections, poll, inbox.

OTX serves one DATA_FEED collection per author a user subscribes to, ``user_<author>``, and
one STIX package per pulse; authentication is HTTP Basic with the API key as username. The
services here know TAXII and OTX's conventions; where pulses come from is a :class:`Feed`
(the hub's store behind an adapter), so this module has no SQL in it.

A user sees over TAXII exactly what the REST API shows them: public pulses and their own
private ones (the store's one visibility rule, applied to every poll, count and part).

Polls page by keyset, pinned to a snapshot: a poll fixes the newest pulse sequence number it
may see, every part is "the next ``page_size`` pulses after the last one sent, up to that
snapshot", so pulses published during a long poll neither repeat nor leave gaps; they come on
the next poll. Result ids carry the poll's parameters (nothing to share between workers); the
key where each part starts is cached when the previous part is sent, and otherwise found by
position.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from starlette.routing import Route

from feedgate.taxii import messages as tm

from .taxii_http import MAX_INBOX_BYTES, Answer, Context, Credentials, endpoint, new_id, status

COLLECTION_PREFIX: Final = "user_"
BINDINGS: Final = (tm.ContentBinding(binding_id=tm.CB_STIX_XML_111),)


@dataclass(frozen=True, slots=True)
class Entry:
    """One pulse as a poll sends it: its unique timestamp label and its STIX package (XML
    of one element that declares its own namespaces, embedded in the block as it is)."""

    label: datetime
    package: bytes


class Feed(Protocol):
    """What the services need from the hub's data."""

    def authenticate(self, credentials: Credentials | None) -> str | None:
        """The username for these credentials (API key as username, or a password), or None."""

    def authors_for(self, username: str) -> Sequence[str]:
        """The authors whose feeds the user may poll (subscriptions, own feed, default author)."""

    def snapshot(self) -> int:
        """The newest pulse sequence number now; a poll sees nothing newer."""

    def count(
        self, author: str, viewer: str, begin: datetime | None, end: datetime, snapshot: int
    ) -> int:
        """How many pulses of ``author`` that ``viewer`` may see have a label in (begin, end]
        and seq <= snapshot (the REST API's visibility rule: public, or the viewer's own)."""

    def page(
        self,
        author: str,
        viewer: str,
        begin: datetime | None,
        end: datetime,
        snapshot: int,
        after: datetime | None,
        limit: int,
    ) -> list[Entry]:
        """Up to ``limit`` pulses (that ``viewer`` may see) in the window after label ``after``,
        by label."""

    def label_at(
        self,
        author: str,
        viewer: str,
        begin: datetime | None,
        end: datetime,
        snapshot: int,
        offset: int,
    ) -> datetime | None:
        """The label of the pulse at ``offset`` (0-based) in the window as ``viewer`` sees it,
        or None."""

    def publish(self, username: str, package: bytes) -> str:
        """Create or update a pulse of ``username`` from a STIX package; its pulse id."""


@dataclass(frozen=True, slots=True)
class _Poll:
    """A poll's parameters: what a result id stands for. ``viewer``, the user who polls, is one
    of them: what a poll holds depends on who may see which pulse."""

    author: str
    viewer: str
    begin: datetime | None
    end: datetime
    snapshot: int

    def result_id(self) -> str:
        data = [self.author, self.viewer, _iso(self.begin), _iso(self.end), self.snapshot]
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def from_result_id(cls, result_id: str) -> _Poll | None:
        try:
            raw = base64.urlsafe_b64decode(result_id + "=" * (-len(result_id) % 4))
            author, viewer, begin, end, snapshot = json.loads(raw)
            end_at = _parse_iso(end) or _now()
            return cls(str(author), str(viewer), _parse_iso(begin), end_at, int(snapshot))
        except (ValueError, TypeError):
            return None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _now() -> datetime:
    return datetime.now(UTC)


class TaxiiServices:
    """The four services, as Starlette routes under ``prefix``."""

    def __init__(self, feed: Feed, *, page_size: int = 1000, prefix: str = "/taxii") -> None:
        self.feed = feed
        self.page_size = page_size
        self.prefix = prefix.rstrip("/")
        self._starts: OrderedDict[tuple[str, int], datetime] = OrderedDict()
        self._lock = threading.Lock()

    def routes(self) -> list[Route]:
        return [
            endpoint(f"{self.prefix}/discovery", self.discovery),
            endpoint(f"{self.prefix}/collections", self.collections),
            endpoint(f"{self.prefix}/poll", self.poll),
            endpoint(f"{self.prefix}/inbox", self.inbox, max_bytes=MAX_INBOX_BYTES),
        ]

    # -- helpers -------------------------------------------------------------------------------

    def _url(self, context: Context, name: str) -> str:
        return f"{context.base_url}{self.prefix}/{name}"

    def _protocol(self, context: Context) -> str:
        return tm.VID_TAXII_HTTPS_10 if context.https else tm.VID_TAXII_HTTP_10

    def _user(self, message: tm.Message, context: Context) -> str | tm.StatusMessage:
        if message.version != tm.VID_TAXII_XML_11:
            return status(
                message,
                tm.ST_UNSUPPORTED_MESSAGE,
                "this server speaks TAXII 1.1",
                **{tm.SD_SUPPORTED_BINDING: tm.VID_TAXII_XML_11},
            )
        username = self.feed.authenticate(context.credentials)
        if username is None:
            return status(
                message,
                tm.ST_UNAUTHORIZED,
                "a valid API key is needed (Basic auth, the key as username)",
            )
        return username

    # -- discovery and collections --------------------------------------------------------------

    def discovery(self, message: tm.Message, context: Context) -> Answer:
        if message.version != tm.VID_TAXII_XML_11:
            return status(message, tm.ST_UNSUPPORTED_MESSAGE, "this server speaks TAXII 1.1")
        if not isinstance(message, tm.DiscoveryRequest):
            return _unsupported(message, "Discovery_Request")
        services = [
            (tm.SVC_DISCOVERY, "discovery", ()),
            (tm.SVC_COLLECTION_MANAGEMENT, "collections", ()),
            (tm.SVC_POLL, "poll", ()),
            (tm.SVC_INBOX, "inbox", BINDINGS),
        ]
        return tm.DiscoveryResponse(
            message_id=new_id(),
            in_response_to=message.message_id,
            service_instances=tuple(
                tm.ServiceInstance(
                    service_type=kind,
                    services_version=tm.VID_TAXII_SERVICES_11,
                    protocol_binding=self._protocol(context),
                    address=self._url(context, path),
                    message_bindings=(tm.VID_TAXII_XML_11,),
                    available=True,
                    content_bindings=bindings,
                )
                for kind, path, bindings in services
            ),
        )

    def collections(self, message: tm.Message, context: Context) -> Answer:
        user = self._user(message, context)
        if isinstance(user, tm.StatusMessage):
            return user
        if not isinstance(message, tm.CollectionInformationRequest):
            return _unsupported(message, "Collection_Information_Request")
        poll = tm.ServiceContact(
            protocol_binding=self._protocol(context),
            address=self._url(context, "poll"),
            message_bindings=(tm.VID_TAXII_XML_11,),
        )
        inbox = tm.InboxService(
            protocol_binding=self._protocol(context),
            address=self._url(context, "inbox"),
            message_bindings=(tm.VID_TAXII_XML_11,),
            content_bindings=BINDINGS,
        )
        return tm.CollectionInformationResponse(
            message_id=new_id(),
            in_response_to=message.message_id,
            collections=tuple(
                tm.Collection(
                    collection_name=f"{COLLECTION_PREFIX}{author}",
                    description=f"Data feed for user: {author}",
                    collection_type=tm.CT_DATA_FEED,
                    available=True,
                    content_bindings=BINDINGS,
                    polling_services=(poll,),
                    receiving_inbox_services=(inbox,) if author == user else (),
                )
                for author in self.feed.authors_for(user)
            ),
        )

    # -- poll ----------------------------------------------------------------------------------

    def poll(self, message: tm.Message, context: Context) -> Answer:
        user = self._user(message, context)
        if isinstance(user, tm.StatusMessage):
            return user
        if isinstance(message, tm.PollRequest):
            return self._poll_request(message, user)
        if isinstance(message, tm.PollFulfillment):
            return self._fulfil(message, user)
        return _unsupported(message, "Poll_Request or Poll_Fulfillment")

    def _author(self, message: tm.Message, name: str, user: str) -> str | tm.StatusMessage:
        author = name.removeprefix(COLLECTION_PREFIX)
        if not name.startswith(COLLECTION_PREFIX) or author not in self.feed.authors_for(user):
            return status(
                message,
                tm.ST_NOT_FOUND,
                f"no collection {name!r} for this user (collections are user_<author> for the"
                " authors you subscribe to)",
                **{tm.SD_ITEM: name},
            )
        return author

    def _poll_request(self, message: tm.PollRequest, user: str) -> Answer:
        author = self._author(message, message.collection_name, user)
        if isinstance(author, tm.StatusMessage):
            return author
        if message.subscription_id is not None:
            return status(
                message,
                tm.ST_NOT_FOUND,
                "subscriptions are not offered: poll without one",
                **{tm.SD_ITEM: message.subscription_id},
            )
        end = message.inclusive_end_timestamp or _now()
        poll = _Poll(author, user, message.exclusive_begin_timestamp, end, self.feed.snapshot())
        parameters = message.poll_parameters
        if parameters is not None and parameters.response_type == tm.RT_COUNT_ONLY:
            count = self._count(poll)
            return tm.PollResponse(
                message_id=new_id(),
                in_response_to=message.message_id,
                collection_name=message.collection_name,
                exclusive_begin_timestamp=poll.begin,
                inclusive_end_timestamp=poll.end,
                record_count=tm.RecordCount(count=count),
            )
        return self._part(message, message.collection_name, poll, 1)

    def _fulfil(self, message: tm.PollFulfillment, user: str) -> Answer:
        poll = _Poll.from_result_id(message.result_id)
        if poll is None:
            return status(
                message, tm.ST_NOT_FOUND, "unknown result id", **{tm.SD_ITEM: message.result_id}
            )
        author = self._author(message, message.collection_name, user)
        if isinstance(author, tm.StatusMessage):
            return author
        if author != poll.author or user != poll.viewer:
            return status(
                message,
                tm.ST_NOT_FOUND,
                "this result is of another collection or another user's poll",
                **{tm.SD_ITEM: message.result_id},
            )
        return self._part(message, message.collection_name, poll, message.result_part_number)

    def _part(self, message: tm.Message, collection: str, poll: _Poll, part: int) -> Answer:
        count = self._count(poll)
        last_part = max(1, math.ceil(count / self.page_size))
        result_id = poll.result_id()
        if part < 1 or part > last_part + 1:
            return status(
                message,
                tm.ST_INVALID_RESPONSE_PART,
                f"this result has {last_part} part(s)",
                **{tm.SD_MAX_PART_NUMBER: str(last_part)},
            )
        header = tm.PollResponse(
            message_id=new_id(),
            in_response_to=message.message_id,
            collection_name=collection,
            more=part < last_part,
            result_id=result_id if last_part > 1 else None,
            result_part_number=part,
            exclusive_begin_timestamp=poll.begin,
            inclusive_end_timestamp=poll.end,
            record_count=tm.RecordCount(count=count),
        )
        if part > last_part:  # the part right after the last: empty, as released cabby asks
            return header
        after = self._start(result_id, poll, part)
        entries = self.feed.page(
            poll.author, poll.viewer, poll.begin, poll.end, poll.snapshot, after, self.page_size
        )
        if entries and part < last_part:
            self._remember(result_id, part + 1, entries[-1].label)
        return _stream(header, entries)

    def _start(self, result_id: str, poll: _Poll, part: int) -> datetime | None:
        """The label after which ``part`` starts (None: the window's start)."""
        if part == 1:
            return None
        with self._lock:
            cached = self._starts.get((result_id, part))
        if cached is not None:
            return cached
        offset = (part - 1) * self.page_size - 1
        return self.feed.label_at(
            poll.author, poll.viewer, poll.begin, poll.end, poll.snapshot, offset
        )

    def _count(self, poll: _Poll) -> int:
        return self.feed.count(poll.author, poll.viewer, poll.begin, poll.end, poll.snapshot)

    def _remember(self, result_id: str, part: int, label: datetime) -> None:
        with self._lock:
            self._starts[(result_id, part)] = label
            while len(self._starts) > 10_000:
                self._starts.popitem(last=False)

    # -- inbox ---------------------------------------------------------------------------------

    def inbox(self, message: tm.Message, context: Context) -> Answer:
        user = self._user(message, context)
        if isinstance(user, tm.StatusMessage):
            return user
        if not isinstance(message, tm.InboxMessage):
            return _unsupported(message, "Inbox_Message")
        own = f"{COLLECTION_PREFIX}{user}"
        for name in message.destination_collection_names:
            if name != own:
                return status(
                    message,
                    tm.ST_DESTINATION_COLLECTION_ERROR,
                    f"you may publish only to your own collection, {own}",
                    **{tm.SD_ACCEPTABLE_DESTINATION: own},
                )
        published = []
        for block in message.content_blocks:
            if block.content_binding.binding_id not in (
                tm.CB_STIX_XML_111,
                tm.CB_STIX_XML_11,
                tm.CB_STIX_XML_12,
                tm.CB_STIX_XML_101,
            ):
                return status(
                    message,
                    tm.ST_UNSUPPORTED_CONTENT,
                    "only STIX 1.x packages can be published",
                    **{tm.SD_SUPPORTED_CONTENT: tm.CB_STIX_XML_111},
                )
            try:
                published.append(self.feed.publish(user, block.content))
            except ValueError as exc:
                return status(message, tm.ST_BAD_MESSAGE, f"cannot publish a block: {exc}")
        return status(message, tm.ST_SUCCESS, f"published {len(published)} pulse(s)")


_CHUNK: Final = 512 * 1024
_OPEN_TAG: Final = re.compile(rb"^<([A-Za-z_][\w.-]*):Poll_Response")


def _stream(header: tm.PollResponse, entries: list[Entry]) -> Iterator[bytes]:
    """A Poll_Response written around packages that are already XML: the header by the
    message writer, each block from bytes (no parsing or re-serialising of 14 kB packages)."""
    opening, *rest = tm.iter_poll_response_xml(header, ())
    prefix = m.group(1) if (m := _OPEN_TAG.match(opening)) else b"taxii_11"
    binding = BINDINGS[0].binding_id.encode()
    head = b'<%s:Content_Block><%s:Content_Binding binding_id="%s"/><%s:Content>' % (
        prefix,
        prefix,
        binding,
        prefix,
    )
    label_open = b"</%s:Content><%s:Timestamp_Label>" % (prefix, prefix)
    tail = b"</%s:Timestamp_Label></%s:Content_Block>" % (prefix, prefix)
    # Chunks of a few hundred kB: every chunk costs the server a hop between threads.
    pending: list[bytes] = [opening]
    size = len(opening)
    for entry in entries:
        pending += (head, entry.package, label_open, entry.label.isoformat().encode(), tail)
        size += len(entry.package) + 200
        if size >= _CHUNK:
            yield b"".join(pending)
            pending, size = [], 0
    pending.extend(rest)
    yield b"".join(pending)


def _unsupported(message: tm.Message, expected: str) -> tm.StatusMessage:
    return status(
        message,
        tm.ST_UNSUPPORTED_MESSAGE,
        f"this service takes a {expected}, not a {type(message).__name__}",
    )
