"""The hub's store as the TAXII services see it: pulses as STIX packages, users by API key.

The adapter between :class:`~feedgate.hub.store.HubStore` (pulses, naive-UTC labels, keyset
cursors) and :class:`~feedgate.hub.taxii_services.Feed` (what a TAXII poll needs). Packages are
built from pulses only when a block is written, so a poll holds one page of pulses, never the
collection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from feedgate.stix.writer import IndicatorDoc, PulseDoc, package_xml

from .model import Pulse, utcnow
from .publish import pulse_from_package
from .store import HubStore
from .taxii_http import Credentials
from .taxii_services import Entry

#: With unique labels, "after label L" is "after cursor (L, any seq)".
_ANY_SEQ = 2**62


def _naive(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def pulse_doc(pulse: Pulse) -> PulseDoc:
    """What the STIX writer needs of a pulse."""
    return PulseDoc(
        id=pulse.id,
        name=pulse.name,
        description=pulse.description,
        author_name=pulse.author_name,
        created=pulse.created,
        modified=pulse.modified,
        tlp=pulse.tlp,
        references=pulse.references,
        tags=pulse.tags,
        revision=pulse.revision,
        indicators=tuple(
            IndicatorDoc(
                id=ind.id or 0,
                indicator=ind.indicator,
                type=ind.type,
                title=ind.title,
                description=ind.description,
                created=ind.created,
                expiration=ind.expiration,
                is_active=ind.is_active,
                role=ind.role,
            )
            for ind in pulse.indicators
        ),
    )


class StoreFeed:
    """A :class:`~feedgate.hub.taxii_services.Feed` over a :class:`HubStore`."""

    def __init__(self, store: HubStore, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.now = now

    def authenticate(self, credentials: Credentials | None) -> str | None:
        """OTX's scheme: the API key as Basic username, password ignored; or a real password."""
        if credentials is None:
            return None
        user = self.store.user_by_api_key(credentials.username)
        if user is not None:
            return user.username
        if credentials.password and self.store.check_password(
            credentials.username, credentials.password
        ):
            return credentials.username
        return None

    def authors_for(self, username: str) -> Sequence[str]:
        """The authors the user subscribes to (the default author included, as on OTX), and
        the user's own feed, where they publish."""
        authors = list(self.store.subscriptions(username))
        if username not in authors:
            authors.append(username)
        return authors

    def snapshot(self) -> int:
        return self.store.max_seq()

    def count(
        self, author: str, viewer: str, begin: datetime | None, end: datetime, snapshot: int
    ) -> int:
        return self.store.count_pulses(author, _naive(begin), _naive(end), snapshot, viewer=viewer)

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
        """A page of packages: rendered once per pulse revision and kept in the store, so a
        poll mostly reads bytes; a package is rendered again when an indicator in it expires.
        Only pulses ``viewer`` may see are looked up, so a cached package of a private pulse is
        never served to anyone but its author."""
        now = self.now()
        keys = self.store.pulse_keys_page(
            author,
            begin_exclusive=_naive(begin),
            end_inclusive=_naive(end),
            after=(_naive(after), _ANY_SEQ) if after is not None else None,  # type: ignore[arg-type]
            max_seq=snapshot,
            limit=limit,
            viewer=viewer,
        )
        rendered = self.store.rendered_packages([k[0] for k in keys])
        stale = [
            pulse_id
            for pulse_id, revision, _, _ in keys
            if (cached := rendered.get(pulse_id)) is None
            or cached[0] != revision
            or (cached[1] is not None and cached[1] <= now)
        ]
        if stale:
            fresh = [self._render(pulse, now) for pulse in self.store.get_pulses(stale).values()]
            self.store.store_packages(fresh)
            rendered.update({pid: (rev, until, xml) for pid, rev, until, xml in fresh})
        return [
            Entry(_aware(label), rendered[pulse_id][2])
            for pulse_id, _, label, _ in keys
            if pulse_id in rendered
        ]

    @staticmethod
    def _render(pulse: Pulse, now: datetime) -> tuple[str, int, datetime | None, bytes]:
        """(id, revision, valid until, XML): valid until the first included indicator expires."""
        expiries = [
            ind.expiration for ind in pulse.usable_indicators(now) if ind.expiration is not None
        ]
        return (
            pulse.id,
            pulse.revision,
            min(expiries) if expiries else None,
            package_xml(pulse_doc(pulse), now=now),
        )

    def label_at(
        self,
        author: str,
        viewer: str,
        begin: datetime | None,
        end: datetime,
        snapshot: int,
        offset: int,
    ) -> datetime | None:
        entries = self.store.pulse_keys_page(
            author,
            begin_exclusive=_naive(begin),
            end_inclusive=_naive(end),
            max_seq=snapshot,
            limit=offset + 1,
            viewer=viewer,
        )
        return _aware(entries[offset][2]) if len(entries) > offset else None

    def publish(self, username: str, package: bytes) -> str:
        pulse = pulse_from_package(package, username, now=self.now())
        existing = self.store.get_pulse(pulse.id)
        if existing is not None and existing.author_name != username:  # ids are per author
            raise ValueError("that package's pulse id belongs to another author")
        if existing is None:
            self.store.add_pulse(pulse)
        else:
            self.store.update_pulse(replace(pulse, created=existing.created))
        return pulse.id
