"""URLs in text: found with linear regexes, normalised as the store normalises, offered once.

What counts as a URL here is what a reader could follow: ``scheme://...`` for http, https and
ftp, their defanged spellings (``hxxp://``, ``hxxps[:]//``), schemeless ``www.`` hosts, and bare
hosts a message defanged (``example[.]com/login``). Each candidate is normalised by
:func:`feedgate.observables.normalise` (the store's own function, so a stored URL is found), at
most once per message however often it occurs.

Every pattern here is possessive or anchored by a look-behind, so a hostile text cannot make
the engine backtrack: the scan stays linear in the text's length.
"""

from __future__ import annotations

import html
import re
from typing import Final

from feedgate.mail import limits
from feedgate.mail._collect import Collector
from feedgate.mail.model import Lookup, Part
from feedgate.observables import InvalidValue, Kind, normalise

__all__ = ["UrlFinder"]

# What may follow a scheme in a URL found in text: anything but white space, controls and the
# characters that delimit URLs in prose and markup (RFC 3986 appendix C).
_TAIL: Final = r"[^\s<>\"'`{}|\\^\x00-\x1f\x7f]"
_SCHEME: Final = r"(?i:h(?:tt|xx)ps?|f[tx]p)(?:://|\[://\]|\[:\]//)"
_WWW: Final = r"(?i:www[0-9]{0,3})(?:\.|\[\.\])"
#: A URL with a (possibly defanged) scheme, or a ``www.`` host; not inside a word or an address.
_URL: Final = re.compile(rf"(?<![A-Za-z0-9+.@/-])(?:{_SCHEME}|{_WWW}){_TAIL}++")
#: Another URL inside one (``?u=http://...``): searched only within a URL already found.
_EMBEDDED: Final = re.compile(rf"(?<![A-Za-z0-9+.-]){_SCHEME}{_TAIL}")
#: Whether a text defangs anything at all (the bare-host search runs only then).
_DEFANG_MARK: Final = re.compile(r"\[(?:\.|dot)\]", re.IGNORECASE)
#: A bare host (``example[.]com/login``): labels and separators, then an optional path.
_BARE_HOST: Final = re.compile(
    rf"(?<![A-Za-z0-9.@/\[\]-])(?:[A-Za-z0-9-]++(?:\.|\[\.\]|(?i:\[dot\])))++"
    rf"[A-Za-z][A-Za-z0-9-]*+(?:[/?#]{_TAIL}*+)?"
)
#: ``href``/``src`` values that are protocol-relative (``//host/path``): no scheme to find.
_RELATIVE_ATTR: Final = re.compile(
    r"(?i:href|src|action|background)\s*+=\s*+[\"']?\s*+(//[^\s<>\"'`]++)"
)
#: A normal form, how its host is looked up, and the host; or None for what is no URL.
_NormalForm = tuple[str, Lookup, str] | tuple[str, None, None] | None
#: Normal forms of recent candidates, shared by the messages of a process: the same links come
#: in many messages (a newsletter to a thousand recipients), and normalising is the largest
#: cost per URL. Bounded in entries and in the length of what it keeps; emptied when full.
_NORMAL_FORMS: Final[dict[str, _NormalForm]] = {}
_CACHED_FORMS: Final = 20_000
_CACHED_CHARS: Final = 512
_TRAILING: Final = ".,;:!?*'\""
_CLOSERS: Final = {")": "(", "]": "["}
_TRIMMED: Final = frozenset(_TRAILING) | _CLOSERS.keys()


def _trim(candidate: str) -> str:
    """A candidate without the punctuation prose puts after a URL (unbalanced closers too)."""
    while candidate:
        stripped = candidate.rstrip(_TRAILING)
        last = stripped[-1:] if stripped else ""
        opener = _CLOSERS.get(last)
        if opener is not None and stripped.count(opener) < stripped.count(last):
            stripped = stripped[:-1]
        if stripped == candidate:
            break
        candidate = stripped
    return candidate


class UrlFinder:
    """Finds the URLs of one message's texts, offering each once, within the URL limits."""

    __slots__ = ("_attempts", "_done", "_out", "_urls", "full")

    def __init__(self, out: Collector) -> None:
        self._out = out
        #: Candidates this message already had: a URL repeated a thousand times costs one look.
        self._done: set[str] = set()
        self._urls = 0
        self._attempts = 0
        #: Set once a limit stopped the search; later texts are not searched.
        self.full = False

    def scan_text(self, text: str) -> None:
        """Offer the URLs in plain text."""
        if self.full:
            return
        take = self._take
        for match in _URL.finditer(text):
            if not take(match.group()):
                return
            # URLs inside this one's query (a redirector's target), each to the same end;
            # every scheme separator holds "//", so a URL with one "//" holds no other URL.
            # Only within a URL short enough to be taken, and only so many: each one is a copy
            # of the rest of the outer URL.
            start, end = match.span()
            first = text.find("//", start, end)
            if end - start <= limits.MAX_URL_CHARS and text.find("//", first + 2, end) >= 0:
                for count, inner in enumerate(_EMBEDDED.finditer(text, start + 1, end)):
                    if count == limits.MAX_EMBEDDED_URLS:
                        self._out.skip(
                            "url",
                            f"a URL holds more than {limits.MAX_EMBEDDED_URLS} URLs: "
                            "the rest of them not looked at",
                        )
                        break
                    if not take(text[inner.start() : end]):
                        return
        if ("[" in text) and _DEFANG_MARK.search(text):
            for match in _BARE_HOST.finditer(text):
                found = match.group()
                if "[" in found.partition("/")[0] and not take(found):
                    return

    def scan_html(self, text: str) -> None:
        """Offer the URLs of an HTML text: in attributes and in the text, entities decoded."""
        if self.full:
            return
        if "&" in text:
            text = html.unescape(text)
        self.scan_text(text)
        if "//" in text:
            for match in _RELATIVE_ATTR.finditer(text):
                if not self._take(match.group(1)):
                    return

    def _take(self, candidate: str) -> bool:
        """Offer one candidate; False once a limit says stop searching."""
        if candidate[-1] in _TRIMMED:
            candidate = _trim(candidate)
            if not candidate:
                return True
        if len(candidate) > limits.MAX_URL_CHARS:
            self._out.skip(
                "url", f"a URL longer than {limits.MAX_URL_CHARS} characters was not looked at"
            )
            return True
        done = self._done
        if candidate in done:
            return True
        done.add(candidate)
        self._attempts += 1
        if self._attempts > limits.MAX_URL_CANDIDATES:
            return self._stop(f"more than {limits.MAX_URL_CANDIDATES} distinct URL candidates")
        known: _NormalForm
        try:
            known = _NORMAL_FORMS[candidate]
        except KeyError:
            known = _normal_form(candidate)
            if len(candidate) <= _CACHED_CHARS:
                if len(_NORMAL_FORMS) >= _CACHED_FORMS:
                    _NORMAL_FORMS.clear()
                _NORMAL_FORMS[candidate] = known
        if known is None:
            return True
        url, lookup, host = known
        out = self._out
        if not out.has(Part.URL, Lookup.URL, url):
            if self._urls >= limits.MAX_URLS:
                return self._stop(f"more than {limits.MAX_URLS} distinct URLs")
            self._urls += 1
            out.add(Part.URL, Lookup.URL, url, candidate)
            if lookup is not None and host is not None:
                out.add(Part.URL, lookup, host, candidate)
        return True

    def _stop(self, why: str) -> bool:
        self.full = True
        self._out.skip("url", f"{why}: the rest of the message was not searched for URLs")
        return False


def _normal_form(candidate: str) -> _NormalForm:
    """The store's normal form of a URL, how its host is looked up and the host, or None for
    what is no URL.

    The host comes out of the normalised URL already normalised (lower case, IDNA, canonical
    IP text); an all-numeric dotted host or one with a colon can only be an IP address there,
    as the domain normaliser refuses a numeric top-level label.
    """
    try:
        url = normalise(Kind.URL, candidate)[1]
    except InvalidValue:
        return None
    host = _host(url)
    if not host:
        return url, None, None
    if ":" in host or host.replace(".", "").isdigit():
        return url, Lookup.IP, host
    return url, Lookup.DOMAIN, host


def _host(url: str) -> str:
    """The host of a *normalised* URL, as :func:`feedgate.observables.url_host` finds it.

    A normalised URL is ``scheme://[userinfo@]host[:port]`` and then a path, query or nothing,
    with the host already in its normal form, so the host is cut out of it with three string
    searches instead of a full ``urlsplit`` (the largest cost per URL otherwise).
    """
    start = url.find("://") + 3
    end = len(url)
    for stop in "/?#":
        found = url.find(stop, start, end)
        if found >= 0:
            end = found
    netloc = url[start:end]
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        return hostport[1 : hostport.find("]")]
    return hostport.partition(":")[0]
