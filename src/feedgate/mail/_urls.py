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
from collections.abc import Iterator
from typing import Final
from urllib.parse import unquote

from feedgate.mail import limits
from feedgate.mail._collect import Collector
from feedgate.mail.model import Lookup, Part
from feedgate.observables import InvalidValue, Kind, normalise, normalise_url

__all__ = ["UrlFinder", "ipv4_number"]

# What may follow a scheme in a URL found in text: anything but white space, controls and the
# characters that delimit URLs in prose and markup (RFC 3986 appendix C).
_TAIL: Final = r"[^\s<>\"'`{}|\\^\x00-\x1f\x7f]"
_SCHEME: Final = r"(?i:h(?:tt|xx)ps?|f[tx]p)(?:://|\[://\]|\[:\]//)"
_WWW: Final = r"(?i:www[0-9]{0,3})(?:\.|\[\.\])"
#: A URL with a (possibly defanged) scheme, or a ``www.`` host; not inside a word or an address.
_URL: Final = re.compile(rf"(?<![A-Za-z0-9+.@/-])(?:{_SCHEME}|{_WWW}){_TAIL}++")
#: Another URL inside one (``?u=http://...``): searched only within a URL already found.
_EMBEDDED: Final = re.compile(rf"(?<![A-Za-z0-9+.-]){_SCHEME}{_TAIL}")
#: A URL inside a decoded query value: the whole of it, up to what cannot be in a URL.
_INNER: Final = re.compile(rf"(?<![A-Za-z0-9+.-]){_SCHEME}{_TAIL}++")
#: How deep redirect targets inside redirect targets are decoded (a Safe Link to a redirector).
_MAX_REDIRECT_DEPTH: Final = 3
#: Proofpoint URL Defense v2 (``/v2/url?u=https-3A__host_path``): ``-XX`` is ``%XX``, ``_`` "/".
_PROOFPOINT_V2: Final = re.compile(r"(?i:https?://urldefense(?:\.proofpoint)?\.com/v2/url\?)")
_PROOFPOINT_CODES: Final = str.maketrans("-_", "%/")
#: Defanged separators (the bare-host search runs only when a text has one): ``[.]``,
#: ``[dot]``, ``(.)``, ``(dot)``, ``{.}``, as :func:`feedgate.observables.refang` undoes them.
_DEFANGED_DOT: Final = r"\[\.\]|\((?:\.|(?i:dot))\)|\{\.\}|(?i:\[dot\])"
_DEFANG_MARK: Final = re.compile(_DEFANGED_DOT)
#: A bare host (``example[.]com/login``): labels and separators, then an optional path.
_BARE_HOST: Final = re.compile(
    rf"(?<![A-Za-z0-9.@/\[\](){{}}-])(?:[A-Za-z0-9-]++(?:\.|{_DEFANGED_DOT}))++"
    rf"[A-Za-z][A-Za-z0-9-]*+(?:[/?#]{_TAIL}*+)?"
)
#: A quoted attribute value holding an ASCII tab or newline (browsers strip them from URLs);
#: it starts with "=", which the engine finds fast, and its name is checked after a match.
_BROKEN_ATTR: Final = re.compile(
    r"=[ \t\n\r]*+(?:\"([^\"\t\n\r]*+[\t\n\r][^\"]*+)\"|'([^'\t\n\r]*+[\t\n\r][^']*+)')"
)
#: The names of the attributes that hold a URL, just before the "=" (``endpos`` there).
_URL_ATTR: Final = re.compile(r"(?i:href|src|action|background)[ \t\n\r]*+\Z")
_TAB_NEWLINE: Final = re.compile(r"[\t\n\r]")
#: ``href``/``src`` values that are protocol-relative (``//host/path``): no scheme to find.
_RELATIVE_ATTR: Final = re.compile(
    r"(?i:href|src|action|background)\s*+=\s*+[\"']?\s*+(//[^\s<>\"'`]++)"
)
#: One URL a candidate offers: its normal form, how its host is looked up, and the host.
_Form = tuple[str, Lookup | None, str | None]
#: The URLs a candidate offers (none for what is no URL): the URL as written first, then the
#: same without its user information and with a numeric host as dotted IPv4.
_NormalForm = tuple[_Form, ...]
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
        for match in _URL.finditer(text):
            if not self._url(text, *match.span()):
                return
        if (("[" in text) or ("(" in text) or ("{" in text)) and _DEFANG_MARK.search(text):
            for match in _BARE_HOST.finditer(text):
                found = match.group()
                host = found.partition("/")[0]
                if ("[" in host or "(" in host or "{" in host) and not self._take(found):
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
        # A browser strips ASCII tab and newline from a URL (WHATWG URL, "basic URL parser"),
        # so an href broken by one still leads where it would without it; the searches above
        # stopped at the break.
        for match in _BROKEN_ATTR.finditer(text):
            at = match.start()
            if _URL_ATTR.search(text, max(0, at - 16), at) is None:
                continue
            value = _TAB_NEWLINE.sub("", match.group(1) or match.group(2)).strip()
            self.scan_text(value)
            if value.startswith("//") and not self._take(value):
                return
            if self.full:
                return

    def _url(self, text: str, start: int, end: int) -> bool:
        """Offer the URL ``text[start:end]`` and the URLs its query leads to; False once a
        limit says stop searching."""
        outer = text[start:end]
        if not self._take(outer):
            return False
        if end - start > limits.MAX_URL_CHARS:
            return True
        # URLs inside this one's query (a redirector's target), literal or percent-encoded,
        # within a URL short enough to be taken, and only so many: each one is a copy of part
        # of the outer URL. A decoded one is not in the text as it is offered: it is seen as
        # the outer URL, which is what an admin finds in the message.
        inner: list[tuple[str, int]] = [(outer, 0)]
        budget = limits.MAX_EMBEDDED_URLS
        while inner:
            url, depth = inner.pop()
            for found, decoded in _embedded(url):
                if budget == 0:
                    self._out.skip(
                        "url",
                        f"a URL holds more than {limits.MAX_EMBEDDED_URLS} URLs: "
                        "the rest of them not looked at",
                    )
                    return True
                budget -= 1
                if not self._take(found, outer if decoded else found):
                    return False
                if decoded and depth + 1 < _MAX_REDIRECT_DEPTH:
                    inner.append((found, depth + 1))
        return True

    def _take(self, candidate: str, seen: str | None = None) -> bool:
        """Offer one candidate (``seen`` as ``seen``, by default as itself); False once a
        limit says stop searching."""
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
        out = self._out
        for url, lookup, host in known:
            if out.has(Part.URL, Lookup.URL, url):
                continue
            if self._urls >= limits.MAX_URLS:
                return self._stop(f"more than {limits.MAX_URLS} distinct URLs")
            self._urls += 1
            shown = candidate if seen is None else seen
            out.add(Part.URL, Lookup.URL, url, shown)
            if lookup is not None and host is not None:
                out.add(Part.URL, lookup, host, shown)
        return True

    def _stop(self, why: str) -> bool:
        self.full = True
        self._out.skip("url", f"{why}: the rest of the message was not searched for URLs")
        return False


def _embedded(url: str) -> Iterator[tuple[str, bool]]:
    """The URLs inside ``url``'s query, each with whether it was decoded (and is looked
    inside in turn).

    Literal ones (``?u=http://...``) run to the end of ``url``, as the outer search would
    find them, and are not looked into again (the outer search found those inside them too);
    percent-encoded ones (``?url=https%3A%2F%2F...``: Outlook Safe Links, Google's ``/url?q=``,
    most redirectors; decoded twice when encoded twice) and Proofpoint's v2 spelling are the
    decoded value of their parameter, looked into for the redirects they hold.
    """
    # Every scheme separator holds "//", so a URL with one "//" holds no other literal URL.
    if url.find("//", url.find("//") + 2) >= 0:
        for inner in _EMBEDDED.finditer(url, 1):
            yield url[inner.start() :], False
    query = url.partition("?")[2].partition("#")[0]
    if not query:
        return
    proofpoint = _PROOFPOINT_V2.match(url) is not None
    if "%" not in query and not proofpoint:
        return
    for field in query.split("&"):
        name, _, value = field.partition("=")
        if proofpoint and name == "u":
            value = value.translate(_PROOFPOINT_CODES)
        if "%" not in value:
            continue
        decoded = unquote(value, errors="replace")
        if "%" in decoded and "//" not in decoded:
            decoded = unquote(decoded, errors="replace")
        if "//" in decoded:
            for inner in _INNER.finditer(decoded):
                yield inner.group(), True


def _normal_form(candidate: str) -> _NormalForm:
    """The URLs the candidate offers, each normalised as the store normalises, with how its
    host is looked up and the host; none for what is no URL.

    A URL with user information (``https://paypal.com@evil.example/``) leads to its host, so
    it is offered without it too; a host that is an IPv4 address written as one number, in
    hex or in octal (``http://3325256867/``) is offered as the dotted address a browser reads
    it as, because the store keeps only that form.
    """
    try:
        url = normalise(Kind.URL, candidate)[1]
    except InvalidValue:
        numeric = _numeric_host(candidate)
        if numeric is None:
            return ()
        try:
            url = normalise(Kind.URL, numeric)[1]
        except InvalidValue:
            return ()
    form = _form(url)
    bare = _without_userinfo(url)
    return (form,) if bare is None else (form, _form(bare))


def _form(url: str) -> _Form:
    """How a normalised URL's host is looked up, and the host.

    The host comes out of the normalised URL already normalised (lower case, IDNA, canonical
    IP text); an all-numeric dotted host or one with a colon can only be an IP address there,
    as the domain normaliser refuses a numeric top-level label.
    """
    host = _host(url)
    if not host:
        return url, None, None
    if ":" in host or host.replace(".", "").isdigit():
        return url, Lookup.IP, host
    return url, Lookup.DOMAIN, host


def _without_userinfo(url: str) -> str | None:
    """A normalised URL without its user information, normalised; None when it has none."""
    start = url.find("://") + 3
    end = _authority_end(url, start)
    at = url.rfind("@", start, end)
    if at < 0:
        return None
    try:
        return normalise_url(url[:start] + url[at + 1 :])[1]
    except InvalidValue:
        return None


#: A URL whose host could be an IPv4 address in a browser's other spellings.
_NUMERIC_HOST: Final = re.compile(
    rf"({_SCHEME})([^/?#@\[\]\s]*+@)?([0-9A-Fa-fXx.]{{1,64}}+)(:[0-9]*+)?(?=[/?#]|$)"
)
_DIGITS: Final = {
    16: frozenset("0123456789abcdefABCDEF"),
    8: frozenset("01234567"),
    10: frozenset("0123456789"),
}


def _numeric_host(candidate: str) -> str | None:
    """``candidate`` with its host in dotted IPv4 when the host is an IPv4 address in another
    spelling (``3325256867``, ``0xC6336423``, ``0306.0063.0144.0243``, ``198.0x33.100``), as
    the WHATWG URL standard's IPv4 parser reads it; None otherwise."""
    match = _NUMERIC_HOST.match(candidate)
    if match is None:
        return None
    address = ipv4_number(match.group(3))
    if address is None:
        return None
    scheme, userinfo, port = match.group(1), match.group(2) or "", match.group(4) or ""
    return f"{scheme}{userinfo}{address}{port}{candidate[match.end() :]}"


def ipv4_number(host: str) -> str | None:
    """The dotted IPv4 address a browser reads ``host`` as, or None when it is no address.

    One to four dot-separated numbers, each decimal, hex (``0x``) or octal (a leading ``0``);
    the last fills the remaining bytes (WHATWG URL, "IPv4 parser").
    """
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if len(parts) > 4:
        return None
    numbers: list[int] = []
    for part in parts:
        if part[:2] in ("0x", "0X"):
            digits, base = part[2:], 16
        elif len(part) > 1 and part[0] == "0":
            digits, base = part[1:], 8
        else:
            digits, base = part, 10
        if not part or not set(digits) <= _DIGITS[base]:
            return None
        numbers.append(int(digits, base) if digits else 0)
    last = numbers.pop()
    if any(n > 255 for n in numbers) or last >= 256 ** (4 - len(numbers)):
        return None
    value = last
    for index, number in enumerate(numbers):
        value += number << (8 * (3 - index))
    return ".".join(str((value >> shift) & 255) for shift in (24, 16, 8, 0))


def _authority_end(url: str, start: int) -> int:
    """Where the authority of a normalised URL that starts at ``start`` ends."""
    end = len(url)
    for stop in "/?#":
        found = url.find(stop, start, end)
        if found >= 0:
            end = found
    return end


def _host(url: str) -> str:
    """The host of a *normalised* URL, as :func:`feedgate.observables.url_host` finds it.

    A normalised URL is ``scheme://[userinfo@]host[:port]`` and then a path, query or nothing,
    with the host already in its normal form, so the host is cut out of it with three string
    searches instead of a full ``urlsplit`` (the largest cost per URL otherwise).
    """
    start = url.find("://") + 3
    netloc = url[start : _authority_end(url, start)]
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        return hostport[1 : hostport.find("]")]
    return hostport.partition(":")[0]
