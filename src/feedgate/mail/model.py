"""The vocabulary of feedgate.mail: parts, offers, matches and verdicts.

Every layer of the mail side speaks these types, and the console, the JSON output of
``feedgate scan`` and the match log use the same words, so they live in one module that imports
nothing else of feedgate.mail.

An :class:`Offer` is one thing a message offers to match: the *part* it came from (the rule
vocabulary, :data:`PARTS`), the *lookup* it needs (which observable kinds can match it) and the
value normalised exactly as the store normalises (:func:`feedgate.observables.normalise`), beside
the text as it was seen in the message.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "ACTIONS",
    "ACTION_SEVERITY",
    "PARTS",
    "Action",
    "Envelope",
    "Inspection",
    "Lookup",
    "Match",
    "Offer",
    "Part",
    "Skipped",
]


class Part(enum.StrEnum):
    """Where in a message an offer came from; the names rules, output and console use."""

    CLIENT_IP = "client-ip"
    ENVELOPE_FROM = "envelope-from"
    FROM = "from"
    SENDER = "sender"
    REPLY_TO = "reply-to"
    URL = "url"
    ATTACHMENT = "attachment"


PARTS: Final = tuple(Part)


class Lookup(enum.StrEnum):
    """What kind of value an offer is, which decides the observable kinds it can match.

    - ``ip``: an IPv4/IPv6 address, matched against ``ipv4``/``ipv6`` exactly and ``cidr`` by range;
    - ``domain``: a host name, matched against ``domain`` observables for itself and every parent;
    - ``email``, ``url``, ``md5``, ``sha1``, ``sha256``: matched exactly (an e-mail address
      case-insensitively, local part included).
    """

    IP = "ip"
    DOMAIN = "domain"
    EMAIL = "email"
    URL = "url"
    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"


@dataclass(frozen=True, slots=True)
class Offer:
    """One value a message offers to match.

    ``value`` is normalised as the store normalises its kind; ``seen`` is the text as it was in
    the message (before decoding what the message encoded or defanged), for the admin to find it.
    """

    part: Part
    lookup: Lookup
    value: str
    seen: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """What the inspector did not look at, and why (a limit hit, an undecodable part)."""

    what: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"what": self.what, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Inspection:
    """All a message offers to match, plus what the inspector had to skip."""

    offers: tuple[Offer, ...]
    skipped: tuple[Skipped, ...] = ()
    message_id: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """A stored observable found in a message, with all the console and the log need.

    ``kind``/``value`` are the stored observable's; ``seen`` and ``part`` say where it was in the
    message; ``context`` is the observable's context (``package_title``, ``package_id``,
    ``indicator_title``, ...).
    """

    part: Part
    kind: str
    value: str
    seen: str
    source: str
    observable_id: int
    context: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "part": str(self.part),
            "kind": self.kind,
            "value": self.value,
            "seen": self.seen,
            "source": self.source,
            "context": dict(self.context),
        }


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the SMTP session said about a message, beside its bytes: the gateway, the milter
    and the quarantine keep it (a release goes to ``rcpt_tos``, not to the headers' To/Cc).

    ``mail_from`` is ``""`` for the null sender (``MAIL FROM:<>``, bounces); ``queue_id`` is the
    MTA's or the gateway's id of the message, as its logs name it.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    client_ip: str | None = None
    helo: str | None = None
    queue_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mail_from": self.mail_from,
            "rcpt_tos": list(self.rcpt_tos),
            "client_ip": self.client_ip,
            "helo": self.helo,
            "queue_id": self.queue_id,
        }


class Action(enum.StrEnum):
    """What a rule does to a message, from the most severe down (see :data:`ACTION_SEVERITY`)."""

    REJECT = "reject"
    DROP = "drop"
    QUARANTINE = "quarantine"
    TAG = "tag"
    HEADER = "header"
    LOG = "log"
    DELIVER = "deliver"


ACTIONS: Final = tuple(Action)

#: A message's action is the most severe of its matching rules' (reject > drop > quarantine >
#: tag/header > log > deliver); tag and header rank alike and both apply.
ACTION_SEVERITY: Final[Mapping[Action, int]] = {
    Action.REJECT: 6,
    Action.DROP: 5,
    Action.QUARANTINE: 4,
    Action.TAG: 3,
    Action.HEADER: 3,
    Action.LOG: 2,
    Action.DELIVER: 0,
}
