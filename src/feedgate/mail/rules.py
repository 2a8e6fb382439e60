"""Policy rules: "if <part> matches <sources/kinds> then <action>", and their validation.

One place checks what a rule may say, for the CLI, the REST API and the console alike
(:func:`make_rule`); every refusal is a :class:`PolicyError` whose message names what is accepted.
Empty ``parts``, ``sources`` or ``kinds`` mean *any*. A new database starts with one rule,
:data:`DEFAULT_RULE` (``threat-feeds``: anything any feed lists is quarantined), which the admin
may edit or delete like any other.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Final

from feedgate.observables import ENFORCEABLE_KINDS, Kind

from ._shown import shown
from .model import ACTION_SEVERITY, PARTS, Action, Match, Part

__all__ = [
    "DEFAULT_RULE",
    "DEFAULT_SUBJECT_PREFIX",
    "KINDS",
    "MAX_RULE_NAME_LENGTH",
    "RULE_ACTIONS",
    "PolicyConflict",
    "PolicyError",
    "PolicyNotFound",
    "Rule",
    "check_sources",
    "make_rule",
]

#: The observable kinds a rule can name, in the order they are listed.
KINDS: Final = tuple(str(kind) for kind in Kind if kind in ENFORCEABLE_KINDS)
#: What a rule can do (``deliver`` is what happens when no rule matches, not a rule's action).
RULE_ACTIONS: Final = tuple(a for a in Action if a is not Action.DELIVER)
DEFAULT_SUBJECT_PREFIX: Final = "[THREAT]"
MAX_RULE_NAME_LENGTH: Final = 64
MAX_PREFIX_LENGTH: Final = 64
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class PolicyError(ValueError):
    """A rule or exception that cannot be stored as given; the message says what to give.

    ``field`` names the rule's or exception's field at fault (for the REST API's answer)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class PolicyNotFound(PolicyError):
    """No rule or exception by the name or value given (the REST API's 404)."""


class PolicyConflict(PolicyError):
    """A rule name or exception value that is taken already (the REST API's 409)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One stored rule. ``parts``/``sources``/``kinds`` empty mean any."""

    name: str
    action: Action
    parts: tuple[Part, ...] = ()
    sources: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    enabled: bool = True
    position: int = 0  # 1, 2, ... in the store; 0: not stored yet
    subject_prefix: str | None = None  # tag rules: the Subject prefix

    @property
    def severity(self) -> int:
        return ACTION_SEVERITY[self.action]

    def matches(self, match: Match) -> bool:
        """Whether this rule applies to ``match`` (a disabled rule applies to nothing)."""
        return (
            self.enabled
            and (not self.parts or match.part in self.parts)
            and (not self.sources or match.source in self.sources)
            and (not self.kinds or match.kind in self.kinds)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "position": self.position,
            "enabled": self.enabled,
            "parts": [str(p) for p in self.parts],
            "sources": list(self.sources),
            "kinds": list(self.kinds),
            "action": str(self.action),
            "subject_prefix": self.subject_prefix,
        }


#: The rule a new database starts with (written by migration ``feeds_0004``).
DEFAULT_RULE: Final = Rule(name="threat-feeds", action=Action.QUARANTINE, position=1)


def _items(value: object, field: str) -> list[str]:
    """A list of words from a list (or one word, or a comma-separated string from a form)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, Iterable) or isinstance(value, bytes | dict):
        raise PolicyError(f"{field}: give a list of names, not {shown(value)}", field)
    out: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise PolicyError(f"{field}: {shown(item)} is not a name: give text", field)
        word = item.strip()
        if word and word not in out:
            out.append(word)
    return out


def check_name(name: object, field: str = "name") -> str:
    if name is not None and not isinstance(name, str):
        raise PolicyError(
            f"{field}: expected text, got {shown(name)}: give the rule a name such as block-phish",
            field,
        )
    if not isinstance(name, str) or not name.strip():
        raise PolicyError(f"{field}: empty: give the rule a name such as block-phish", field)
    if len(name) > MAX_RULE_NAME_LENGTH or not _NAME.fullmatch(name):
        raise PolicyError(
            f"{field}: {shown(name)} cannot be used: use at most {MAX_RULE_NAME_LENGTH} "
            "letters, digits, '-', '_' or '.', starting with a letter or digit (e.g. block-phish)",
            field,
        )
    return name


def _parts(value: object) -> tuple[Part, ...]:
    words = [w.lower() for w in _items(value, "parts")]
    known = {str(p): p for p in PARTS}
    unknown = [w for w in words if w not in known and w not in ("any", "all")]
    if unknown:
        raise PolicyError(
            f"parts: unknown part {', '.join(map(shown, unknown))}: the parts are "
            f"{', '.join(known)} (none: every part)",
            "parts",
        )
    if "any" in words or "all" in words:
        return ()
    return tuple(p for p in PARTS if str(p) in words)


def _kinds(value: object) -> tuple[str, ...]:
    words = [w.lower() for w in _items(value, "kinds")]
    unknown = [w for w in words if w not in KINDS and w not in ("any", "all")]
    if unknown:
        raise PolicyError(
            f"kinds: unknown observable kind {', '.join(map(shown, unknown))}: the kinds are "
            f"{', '.join(KINDS)} (none: every kind)",
            "kinds",
        )
    if "any" in words or "all" in words:
        return ()
    return tuple(k for k in KINDS if k in words)


def _action(value: object) -> Action:
    text = value.strip().lower() if isinstance(value, str) else value
    for action in RULE_ACTIONS:
        if text == action.value:
            return action
    choices = ", ".join(a.value for a in RULE_ACTIONS)
    if text == Action.DELIVER.value:
        raise PolicyError(
            f"action: deliver is what happens when no rule matches; a rule does one of {choices}"
            " (disable or delete a rule to let its messages through)",
            "action",
        )
    raise PolicyError(f"action: unknown action {shown(value)}: choose from {choices}", "action")


def _prefix(value: object, action: Action) -> str | None:
    if action is not Action.TAG:
        if value is not None:
            raise PolicyError(
                f"subject_prefix: only a tag rule puts a prefix on the Subject; this rule's "
                f"action is {action.value}",
                "subject_prefix",
            )
        return None
    if value is None:
        return DEFAULT_SUBJECT_PREFIX
    if not isinstance(value, str) or not value.strip():
        got = "" if isinstance(value, str) else f"expected text, got {shown(value)}: "
        raise PolicyError(
            f"subject_prefix: {got}give the text to put before the Subject, e.g. "
            f"{DEFAULT_SUBJECT_PREFIX}",
            "subject_prefix",
        )
    text = value.strip()
    if len(text) > MAX_PREFIX_LENGTH or any(not c.isprintable() for c in text):
        raise PolicyError(
            f"subject_prefix: {shown(text)} cannot be used: give at most {MAX_PREFIX_LENGTH}"
            " printable characters on one line",
            "subject_prefix",
        )
    return text


def check_sources(sources: Iterable[str], known: Collection[str]) -> None:
    """Refuse source names that are not sources (``known``), naming the ones there are."""
    unknown = [s for s in sources if s not in known]
    if not unknown:
        return
    there = (
        f"the sources are {', '.join(sorted(known))}"
        if known
        else "there are no sources yet (add one with feedgate source add)"
    )
    raise PolicyError(
        f"sources: no source named {', '.join(map(shown, unknown))}: {there} (none: any source)",
        "sources",
    )


def make_rule(
    name: object,
    *,
    action: object,
    parts: object = (),
    sources: object = (),
    kinds: object = (),
    enabled: object = True,
    position: int = 0,
    subject_prefix: object = None,
    known_sources: Collection[str] | None = None,
) -> Rule:
    """A checked :class:`Rule` from what a user gave (words in any case, lists or
    comma-separated text); ``known_sources``, when given, are the source names a rule may
    name. Raises :class:`PolicyError`."""
    checked_action = _action(action)
    source_names = tuple(_items(sources, "sources"))
    if known_sources is not None:
        check_sources(source_names, known_sources)
    if not isinstance(enabled, bool):
        raise PolicyError(f"enabled: {shown(enabled)}: give true or false", "enabled")
    return Rule(
        name=check_name(name),
        action=checked_action,
        parts=_parts(parts),
        sources=source_names,
        kinds=_kinds(kinds),
        enabled=enabled,
        position=position,
        subject_prefix=_prefix(subject_prefix, checked_action),
    )
