"""The OTX REST API subset at /api/v1, shaped so that AlienVault's OTXv2 SDK works against the hub.

Authentication is the ``X-OTX-API-KEY`` header; a missing or unknown key is 403 with a DRF-style
``{"detail": ...}`` body (the key itself never appears in a response or a log). Lists page the DRF
way, ``{count, next, previous, results}``, where ``next``/``previous`` are absolute URLs built
from the request, so the SDK's ``walkapi`` follows them. Bad input is 400 with field errors
(``{"field": ["message"]}``; indicators as a list with one object per item, ``{}`` for good
ones), an unknown or invisible pulse 404 ``{"detail": "Not found."}``.

Visibility: a private pulse (``public`` false) is seen only by its author (the store's
:func:`~feedgate.hub.store.visible_to`, which the TAXII services apply too); only the author may
edit a pulse. Endpoint functions are plain sync functions run in Starlette's thread pool; the
body is read first on the event loop.

Events (``/pulses/events``): the store keeps no event log, so events are derived from pulses of
subscribed authors modified since ``since``; each is OTX's ``{id, object_type: "pulse",
object_id, action: "subscribe", created}`` (the action OTX's cached client acts on by fetching the
pulse), with ``pulse_action`` ``created`` or ``updated``. Deletions are not reported.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from feedgate.asgi_body import read_limited

from .model import (
    PRIVATE_TLPS,
    TLPS,
    Indicator,
    OTXFormatError,
    Pulse,
    User,
    canonical_type,
    format_time,
    indicator_from_otx,
    indicator_to_otx,
    is_pulse_id,
    parse_time,
    pulse_to_otx,
    text_problem,
    utcnow,
)
from .store import HubStore

API_KEY_HEADER: Final = "X-OTX-API-KEY"
PREFIX: Final = "/api/v1"
IPV4_EXPIRY: Final = timedelta(days=30)
DEFAULT_LIMIT: Final = 50
#: The largest request body taken (a pulse of tens of thousands of indicators fits): more is 413.
MAX_BODY_BYTES: Final = 64 * 1024**2
#: The largest row offset the databases take (a signed 64-bit integer).
_MAX_OFFSET: Final = 2**63 - 1
#: ``pulse_info.pulses`` lists at most this many pulses (``count`` is the full number).
PULSE_INFO_MAX: Final = 50

_NOT_FOUND: Final = {"detail": "Not found."}
_LIST_FIELDS: Final = (
    "tags",
    "references",
    "targeted_countries",
    "industries",
    "malware_families",
    "attack_ids",
)
_INDICATOR_EDIT_FIELDS: Final = (
    "title",
    "description",
    "content",
    "expiration",
    "is_active",
    "role",
)
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$", re.IGNORECASE)
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$", re.IGNORECASE)
_HASH_TYPES: Final = {32: "FileHash-MD5", 40: "FileHash-SHA1", 64: "FileHash-SHA256"}

#: The SDK's IndicatorTypes slugs (lower case) → the OTX types a lookup covers and the sections.
_SLUGS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "ipv4": ("IPv4", ("general", "reputation", "geo", "malware", "url_list", "passive_dns")),
    "ipv6": ("IPv6", ("general", "reputation", "geo", "malware", "url_list", "passive_dns")),
    "domain": ("domain", ("general", "geo", "malware", "url_list", "passive_dns", "whois")),
    "hostname": ("hostname", ("general", "geo", "malware", "url_list", "passive_dns")),
    "url": ("URL", ("general", "url_list")),
    "file": ("file", ("general", "analysis")),
    "cve": ("CVE", ("general",)),
    "yara": ("YARA", ("general",)),
    "email": ("email", ("general",)),
    "cidr": ("CIDR", ("general",)),
    "mutex": ("Mutex", ("general",)),
}


class ApiError(Exception):
    """An HTTP error answer with a JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def not_found() -> ApiError:
    return ApiError(404, dict(_NOT_FOUND))


def bad_request(errors: Mapping[str, Any]) -> ApiError:
    return ApiError(400, dict(errors))


@dataclass(frozen=True, slots=True)
class Call:
    """One request as an endpoint function sees it: the request, its body and the user."""

    request: Request
    body: bytes
    user: User

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def json(self) -> Any:
        if not self.body.strip():
            return {}
        try:
            data = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, {"detail": "JSON parse error."}) from None
        except RecursionError:
            raise ApiError(400, {"detail": "JSON parse error - nested too deep."}) from None
        problem = text_problem(data)
        if problem is not None:  # it would be stored, then break every answer that shows it
            raise ApiError(400, {"detail": f"JSON parse error - {problem}."})
        return data


Handler = Callable[[Call], Any]


# --- validation ---------------------------------------------------------------------------


def validate_value(kind: str, value: str) -> str | None:
    """Why ``value`` is not a valid indicator of OTX type ``kind``, or ``None`` if it is."""
    text = value.strip()
    if not text:
        return "This field may not be blank."
    if any(c.isspace() for c in text) and kind not in ("YARA", "osquery", "FilePath", "Mutex"):
        return f"not a valid {kind}: contains white space"
    try:
        if kind == "IPv4":
            ipaddress.IPv4Address(text)
        elif kind == "IPv6":
            ipaddress.IPv6Address(text)
        elif kind == "CIDR":
            ipaddress.ip_network(text, strict=False)
            if "/" not in text:
                return f"not a valid CIDR: {value!r}"
    except ValueError:
        return f"not a valid {kind}: {value!r}"
    if kind in ("domain", "hostname") and not _is_hostname(text):
        return f"not a valid {kind}: {value!r}"
    if kind == "email":
        local, at, domain = text.rpartition("@")
        if not at or not local or not _is_hostname(domain):
            return f"not a valid email: {value!r}"
    if kind == "URL":
        match = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#]+)", text)
        if not match:
            return f"not a valid URL: {value!r}"
    if kind.startswith("FileHash-"):
        lengths = {"FileHash-MD5": 32, "FileHash-SHA1": 40, "FileHash-SHA256": 64}
        want = lengths.get(kind)
        if not _HEX.match(text) or (want is not None and len(text) != want):
            return f"not a valid {kind}: {value!r}"
    if kind == "CVE" and not _CVE.match(text):
        return f"not a valid CVE: {value!r}"
    return None


def _is_hostname(text: str) -> bool:
    name = text.rstrip(".")
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = name.split(".")
    return len(labels) >= 2 and len(name) <= 253 and all(_HOST_LABEL.match(x) for x in labels)


def _text(data: Mapping[str, Any], key: str, errors: dict[str, Any]) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        errors[key] = ["Not a valid string."]
        return None
    return value


def _flag(data: Mapping[str, Any], key: str, errors: dict[str, Any]) -> bool | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    errors[key] = ["Must be a valid boolean."]
    return None


def _strings(value: Any, key: str, errors: dict[str, Any]) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        errors[key] = [f'Expected a list of items but got type "{type(value).__name__}".']
        return None
    out: list[str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int):
            errors[key] = ["Not a valid string."]
            return None
        out.append(str(item))
    return tuple(out)


def _tlp(data: Mapping[str, Any], errors: dict[str, Any]) -> tuple[str, str | None]:
    """(the key used, the TLP in lower case) from ``TLP`` or ``tlp``."""
    key = "TLP" if data.get("TLP") is not None else "tlp"
    value = data.get(key)
    if value is None:
        return key, None
    if not isinstance(value, str) or value.lower() not in TLPS:
        errors[key] = [f'"{value}" is not a valid choice.']
        return key, None
    return key, value.lower()


def parse_indicator(item: Any, now: datetime) -> tuple[Indicator | None, dict[str, Any]]:
    """A new indicator from the API's JSON and its field errors (empty when it is good)."""
    errors: dict[str, Any] = {}
    if not isinstance(item, Mapping):
        return None, {"non_field_errors": ["Invalid data. Expected a dictionary."]}
    value = item.get("indicator")
    kind_raw = item.get("type")
    if not isinstance(value, str) or not value.strip():
        errors["indicator"] = ["This field is required."]
    kind: str | None = None
    if not isinstance(kind_raw, str) or not kind_raw:
        errors["type"] = ["This field is required."]
    else:
        try:
            kind = canonical_type(kind_raw)
        except ValueError:
            errors["type"] = [f'"{kind_raw}" is not a valid choice.']
    if kind is not None and isinstance(value, str) and "indicator" not in errors:
        problem = validate_value(kind, value)
        if problem:
            errors["indicator"] = [problem]
    if errors:
        return None, errors
    data = {k: v for k, v in item.items() if k not in ("id", "created")}
    data["indicator"] = str(value).strip()
    try:
        ind = indicator_from_otx(data, where="indicator", default_created=now)
    except OTXFormatError as exc:
        path, _, message = str(exc).partition(": ")
        return None, {path.rsplit(".", 1)[-1]: [message]}
    if ind.expiration is None and ind.type == "IPv4" and "expiration" not in item:
        ind = replace(ind, expiration=now + IPV4_EXPIRY)
    return ind, {}


def parse_indicators(raw: Any, now: datetime) -> tuple[list[Indicator], Any]:
    """New indicators from a JSON list; errors as DRF gives them for a list (``{}`` per good
    item), or ``None`` when all are good."""
    if raw is None:
        return [], None
    if not isinstance(raw, list):
        return [], [f'Expected a list of items but got type "{type(raw).__name__}".']
    out: list[Indicator] = []
    errors: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for item in raw:
        ind, errs = parse_indicator(item, now)
        if ind is not None:
            key = (ind.type, ind.indicator)
            if key in seen:
                errs = {"indicator": [f"duplicate indicator {ind.indicator!r} in this pulse"]}
            seen.add(key)
            out.append(ind)
        errors.append(errs)
    return out, (errors if any(errors) else None)


# --- JSON shapes --------------------------------------------------------------------------


def pulse_summary(pulse: Pulse) -> dict[str, Any]:
    """A pulse as OTX lists it in search results and ``pulse_info``: no indicators, a count."""
    data = pulse_to_otx(pulse)
    del data["indicators"]
    data["indicator_count"] = len(pulse.indicators)
    data["author"] = {"username": pulse.author_name}
    return data


def user_json(user: User, pulse_count: int, subscribed: bool) -> dict[str, Any]:
    return {
        "username": user.username,
        "member_since": format_time(user.created),
        "pulse_count": pulse_count,
        "subscriber_count": 0,
        "follower_count": 0,
        "is_subscribed": subscribed,
        "is_following": False,
    }


def _empty_section(section: str) -> dict[str, Any]:
    """Sections the hub has no data for, in OTX's shape with nothing in them."""
    if section == "reputation":
        return {"reputation": None}
    if section == "geo":
        return {"country_code": None, "country_name": None, "city": None, "asn": None}
    if section == "malware":
        return {"data": [], "size": 0, "count": 0}
    if section == "url_list":
        return {"url_list": [], "page_num": 1, "limit": 10, "paged": True, "has_next": False,
                "full_size": 0, "actual_size": 0}  # fmt: skip
    if section == "passive_dns":
        return {"passive_dns": [], "count": 0}
    if section == "analysis":
        return {"analysis": None, "malware": {}, "page_type": "generic"}
    return {"whois": None}


# --- the API ------------------------------------------------------------------------------


class RestApi:
    """The OTX REST API over a :class:`HubStore`."""

    def __init__(self, store: HubStore, *, max_limit: int = 1000) -> None:
        self.store = store
        self.max_limit = max_limit

    def routes(self) -> list[BaseRoute]:
        get, post, patch = ["GET"], ["POST"], ["PATCH"]
        p = PREFIX
        return [
            Route(p, self.index, methods=get),
            Route(f"{p}/", self.index, methods=get),
            Route(f"{p}/users/{{username}}", self._wrap(self.user), methods=get),
            Route(f"{p}/pulses/subscribed", self._wrap(self.subscribed), methods=get),
            Route(f"{p}/pulses/my", self._wrap(self.my_pulses), methods=get),
            Route(f"{p}/pulses/events", self._wrap(self.events), methods=get),
            Route(f"{p}/pulses/create", self._wrap(self.create_pulse), methods=post),
            Route(f"{p}/pulses/user/{{username}}", self._wrap(self.user_pulses), methods=get),
            Route(f"{p}/pulses/{{pulse_id}}/indicators", self._wrap(self.indicators), methods=get),
            Route(f"{p}/pulses/{{pulse_id}}", self._wrap(self.pulse_detail), methods=get),
            Route(f"{p}/pulses/{{pulse_id}}", self._wrap(self.edit_pulse), methods=patch),
            Route(f"{p}/search/pulses", self._wrap(self.search), methods=get),
            Route(f"{p}/indicators/{{slug}}/{{rest:path}}", self._wrap(self.indicator_details)),
            Route(f"{p}/{{rest:path}}", self._wrap(self.unknown)),
        ]

    @staticmethod
    def index(request: Request) -> Response:
        """``GET /api/v1/``, for anyone: what there is and how to authenticate (a bare 403 or
        404 here told a newcomer nothing)."""
        base = f"{request.url.scheme}://{request.url.netloc}"
        api = f"{base}{PREFIX}"
        return JSONResponse(
            {
                "name": "feedgate hub",
                "description": "The OTX REST API (the subset AlienVault's OTXv2 SDK uses) and"
                " TAXII 1.1, over this hub's pulses.",
                "authentication": {
                    "header": API_KEY_HEADER,
                    "how": f"send your API key in the {API_KEY_HEADER} header"
                    " (an admin adds keys with `feedgate hub user add`)",
                },
                "links": {
                    "me": f"{api}/users/me",
                    "subscribed": f"{api}/pulses/subscribed",
                    "my_pulses": f"{api}/pulses/my",
                    "events": f"{api}/pulses/events",
                    "search": f"{api}/search/pulses?q=emotet",
                    "create": f"{api}/pulses/create",
                    "pulse": f"{api}/pulses/{{pulse_id}}",
                    "user_pulses": f"{api}/pulses/user/{{username}}",
                    "indicator": f"{api}/indicators/{{type}}/{{value}}/general",
                },
                "taxii": {
                    "discovery": f"{base}/taxii/discovery",
                    "authentication": "HTTP Basic, the API key as user name",
                },
                "health": f"{base}/healthz",
            }
        )

    def _wrap(self, handler: Handler) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            body: bytes | None = b""
            if request.method in ("POST", "PATCH", "PUT"):
                body = await read_limited(request, MAX_BODY_BYTES)
            if body is None:
                detail = f"Request body too large: at most {MAX_BODY_BYTES} bytes."
                return JSONResponse({"detail": detail}, status_code=413)
            return await run_in_threadpool(self._run, handler, request, body)

        return endpoint

    def _run(self, handler: Handler, request: Request, body: bytes) -> Response:
        try:
            user = self._authenticate(request)
            result = handler(Call(request, body, user))
        except ApiError as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        if isinstance(result, Response):
            return result
        return JSONResponse(result)

    def _authenticate(self, request: Request) -> User:
        key = request.headers.get(API_KEY_HEADER)
        if not key:
            detail = (
                "Authentication credentials were not provided: send your API key in the"
                f" {API_KEY_HEADER} header (see {PREFIX}/)."
            )
            raise ApiError(403, {"detail": detail})
        user = self.store.user_by_api_key(key)
        if user is None:
            raise ApiError(403, {"detail": f"Invalid API key (in the {API_KEY_HEADER} header)."})
        return user

    # --- helpers -------------------------------------------------------------------------

    def _paging(self, call: Call, default_limit: int = DEFAULT_LIMIT) -> tuple[int, int]:
        def number(name: str, default: int) -> int:
            raw = call.query(name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                if name == "page":
                    raise ApiError(404, {"detail": "Invalid page."}) from None
                return default
            return value if value >= 1 else default

        limit, page = min(number("limit", default_limit), self.max_limit), number("page", 1)
        if (page - 1) * limit > _MAX_OFFSET:  # past any last page, and beyond what SQL can skip
            raise ApiError(404, {"detail": "Invalid page."})
        return limit, page

    @staticmethod
    def _paged(call: Call, count: int, page: int, limit: int, results: list[Any]) -> Any:
        """DRF's page: absolute next/previous URLs from the request; 404 past the last page."""
        last = max(1, -(-count // limit))
        if page > last:
            raise ApiError(404, {"detail": "Invalid page."})
        url = call.request.url
        nxt = str(url.include_query_params(page=page + 1)) if page < last else None
        prev: str | None = None
        if page > 1:
            prev = str(
                url.remove_query_params("page")
                if page == 2
                else url.include_query_params(page=page - 1)
            )
        return {"count": count, "next": nxt, "previous": prev, "results": results}

    @staticmethod
    def _time(call: Call, name: str) -> datetime | None:
        raw = call.query(name)
        if not raw:
            return None
        try:
            return parse_time(raw)
        except ValueError as exc:  # it says which: not ISO 8601, or out of range
            raise bad_request({name: [str(exc)]}) from None

    def _visible(self, call: Call, pulse_id: str) -> Pulse:
        viewer = call.user.username
        pulse = self.store.get_pulse(pulse_id, viewer=viewer) if is_pulse_id(pulse_id) else None
        if pulse is None:
            raise not_found()
        return pulse

    # --- users ---------------------------------------------------------------------------

    def user(self, call: Call) -> Any:
        name = call.path("username")
        me = call.user
        target = me if name == "me" else self.store.get_user(name)
        if target is None:
            raise not_found()
        count = self.store.pulses_by_authors([target.username], viewer=me.username, limit=1).count
        subscribed = target.username in self.store.subscriptions(me.username)
        return user_json(target, count, subscribed)

    # --- pulse lists ---------------------------------------------------------------------

    def _author_list(self, call: Call, authors: Sequence[str], *, events: bool = False) -> Any:
        limit, page = self._paging(call)
        since = self._time(call, "since" if events else "modified_since")
        result = self.store.pulses_by_authors(
            authors, viewer=call.user.username, modified_since=since, limit=limit, page=page
        )
        if events:
            items = [self._event(p) for p in result.pulses]
        else:
            items = [pulse_to_otx(p) for p in result.pulses]
        return self._paged(call, result.count, page, limit, items)

    def subscribed(self, call: Call) -> Any:
        authors = self.store.subscriptions(call.user.username)
        wanted = call.query("author_name")
        if wanted:
            authors = [a for a in authors if a == wanted]
        return self._author_list(call, authors)

    def my_pulses(self, call: Call) -> Any:
        return self._author_list(call, [call.user.username])

    def user_pulses(self, call: Call) -> Any:
        name = call.path("username")
        if self.store.get_user(name) is None:
            raise not_found()
        return self._author_list(call, [name])

    def events(self, call: Call) -> Any:
        return self._author_list(call, self.store.subscriptions(call.user.username), events=True)

    @staticmethod
    def _event(pulse: Pulse) -> dict[str, Any]:
        return {
            "id": f"{pulse.id}-{pulse.revision}",
            "object_type": "pulse",
            "object_id": pulse.id,
            "action": "subscribe",
            "pulse_action": "created" if pulse.revision == 1 else "updated",
            "created": format_time(pulse.modified),
        }

    def search(self, call: Call) -> Any:
        limit, page = self._paging(call, 25)
        q = call.query("q") or ""
        result = self.store.search_pulses(q, limit=limit, page=page, viewer=call.user.username)
        body = self._paged(
            call, result.count, page, limit, [pulse_summary(p) for p in result.pulses]
        )
        body["exact_match"] = ""
        return body

    # --- one pulse -----------------------------------------------------------------------

    def pulse_detail(self, call: Call) -> Any:
        return pulse_to_otx(self._visible(call, call.path("pulse_id")), detail=True)

    def indicators(self, call: Call) -> Any:
        pulse = self._visible(call, call.path("pulse_id"))
        limit, page = self._paging(call, 1000)
        include_inactive = (call.query("include_inactive") or "0").lower() in ("1", "true")
        now = utcnow()
        items = [i for i in pulse.indicators if include_inactive or i.usable(now)]
        chunk = items[(page - 1) * limit : page * limit]
        return self._paged(call, len(items), page, limit, [indicator_to_otx(i) for i in chunk])

    def create_pulse(self, call: Call) -> Any:
        data = call.json()
        if not isinstance(data, Mapping):
            raise bad_request({"non_field_errors": ["Invalid data. Expected a dictionary."]})
        errors: dict[str, Any] = {}
        name = _text(data, "name", errors)
        if "name" not in errors and not (name or "").strip():
            errors["name"] = ["This field is required."]
        description = _text(data, "description", errors) or ""
        adversary = _text(data, "adversary", errors) or ""
        public = _flag(data, "public", errors)
        tlp_key, tlp = _tlp(data, errors)
        lists = {key: _strings(data.get(key), key, errors) for key in _LIST_FIELDS}
        if data.get("group_ids"):
            errors["group_ids"] = ["Groups are not supported by this hub."]
        now = utcnow()
        indicators, ind_errors = parse_indicators(data.get("indicators"), now)
        if ind_errors is not None:
            errors["indicators"] = ind_errors
        public = True if public is None else public
        tlp = tlp or "green"
        if public and tlp in PRIVATE_TLPS and tlp_key not in errors:
            errors[tlp_key] = [f"A {tlp} pulse cannot be public; set public to false."]
        if errors:
            raise bad_request(errors)
        pulse = Pulse(
            id=secrets.token_hex(12),
            name=(name or "").strip(),
            author_name=call.user.username,
            created=now,
            modified=now,
            description=description,
            tlp=tlp,
            public=public,
            adversary=adversary,
            indicators=tuple(indicators),
        )
        extra: dict[str, Any] = {k: v or () for k, v in lists.items()}
        pulse = replace(pulse, **extra)
        stored = self.store.add_pulse(pulse)
        return JSONResponse(pulse_to_otx(stored, detail=True), status_code=201)

    def edit_pulse(self, call: Call) -> Any:
        pulse = self._visible(call, call.path("pulse_id"))
        if pulse.author_name != call.user.username:
            raise ApiError(403, {"detail": "You do not have permission to perform this action."})
        data = call.json()
        if not isinstance(data, Mapping):
            raise bad_request({"non_field_errors": ["Invalid data. Expected a dictionary."]})
        errors: dict[str, Any] = {}
        changes: dict[str, Any] = {}
        for key in ("name", "description", "adversary"):
            if key in data:
                value = _text(data, key, errors)
                if key == "name" and "name" not in errors and not (value or "").strip():
                    errors["name"] = ["This field may not be blank."]
                changes[key] = (value or "").strip() if key == "name" else (value or "")
        public = _flag(data, "public", errors)
        if public is not None:
            changes["public"] = public
        tlp_key, tlp = _tlp(data, errors)
        if tlp is not None:
            changes["tlp"] = tlp
        for key in _LIST_FIELDS:
            if key in data:
                merged = _edit_list(getattr(pulse, key), data[key], key, errors)
                if merged is not None:
                    changes[key] = merged
        now = utcnow()
        new_indicators = pulse.indicators
        if "indicators" in data:
            new_indicators, ind_errors = _edit_indicators(pulse, data["indicators"], now)
            if ind_errors:
                errors["indicators"] = ind_errors
        final_public = changes.get("public", pulse.public)
        final_tlp = changes.get("tlp", pulse.tlp)
        if final_public and final_tlp in PRIVATE_TLPS and tlp_key not in errors:
            errors[tlp_key] = [f"A {final_tlp} pulse cannot be public; set public to false."]
        if errors:
            raise bad_request(errors)
        updated = replace(pulse, indicators=new_indicators, **changes)
        stored = self.store.update_pulse(updated)
        return pulse_to_otx(stored, detail=True)

    # --- indicators ----------------------------------------------------------------------

    def indicator_details(self, call: Call) -> Any:
        slug = call.path("slug").lower()
        value, _, section = call.path("rest").rstrip("/").rpartition("/")
        if slug not in _SLUGS or not value:
            raise not_found()
        kind, sections = _SLUGS[slug]
        if section not in sections:
            raise not_found()
        if kind == "file":
            kind = _HASH_TYPES.get(len(value), "")
            if not kind:
                raise bad_request({"detail": f"not a valid file hash: {value!r}"})
        problem = validate_value(kind, value)
        if problem:
            raise bad_request({"detail": problem})
        if section != "general":
            return _empty_section(section)
        return self._general(call, kind, value, sections)

    def _general(self, call: Call, kind: str, value: str, sections: Sequence[str]) -> Any:
        me = call.user.username
        visible: list[tuple[Pulse, Indicator]] = []
        seen: set[str] = set()
        for hit in self.store.indicator_lookup(kind, value, viewer=me):
            if hit.pulse_id in seen:
                continue
            pulse = self.store.get_pulse(hit.pulse_id, viewer=me)
            if pulse is None:
                continue
            seen.add(hit.pulse_id)
            visible.append((pulse, hit.indicator))
        references = sorted({r for p, _ in visible for r in p.references})

        def related(attr: str) -> list[str]:
            return sorted({x for p, _ in visible for x in getattr(p, attr) if x})

        base: dict[str, Any] = {}
        if visible:
            first = visible[0][1]
            base = {
                "id": first.id,
                "indicator": first.indicator,
                "type": first.type,
                "title": first.title,
                "description": first.description,
                "content": first.content,
                "access_type": "public",
                "access_reason": "",
            }
        return {
            "indicator": value,
            "type": kind,
            "type_title": kind,
            "sections": list(sections),
            "base_indicator": base,
            "pulse_info": {
                "count": len(visible),
                "pulses": [pulse_summary(p) for p, _ in visible[:PULSE_INFO_MAX]],
                "references": references,
                "related": {
                    "alienvault": {"adversary": [], "malware_families": [], "industries": []},
                    "other": {
                        "adversary": sorted({p.adversary for p, _ in visible if p.adversary}),
                        "malware_families": related("malware_families"),
                        "industries": related("industries"),
                    },
                },
            },
            "false_positive": [],
            "validation": [],
        }

    def unknown(self, call: Call) -> Any:
        raise not_found()


def _edit_list(
    current: tuple[str, ...], change: Any, key: str, errors: dict[str, Any]
) -> tuple[str, ...] | None:
    """A list field after a PATCH: a list replaces it, ``{"add": [...], "remove": [...]}``
    edits it (the SDK's ``edit_pulse`` form)."""
    if isinstance(change, Mapping):
        unknown = set(change) - {"add", "remove"}
        if unknown:
            errors[key] = [f"unknown operation(s): {', '.join(sorted(map(str, unknown)))}"]
            return None
        add = _strings(change.get("add"), key, errors)
        remove = _strings(change.get("remove"), key, errors)
        if add is None or remove is None:
            return None
        kept = [x for x in current if x not in set(remove)]
        return tuple(kept + [x for x in add if x not in kept])
    return _strings(change, key, errors)


def _edit_indicators(pulse: Pulse, change: Any, now: datetime) -> tuple[tuple[Indicator, ...], Any]:
    """The pulse's indicators after ``{"add": [...], "edit": [...], "remove": [...]}``, and the
    errors (``None`` when there are none), keyed by operation."""
    if not isinstance(change, Mapping):
        return pulse.indicators, ['Expected {"add": [...], "edit": [...], "remove": [...]}.']
    unknown = set(change) - {"add", "edit", "remove"}
    if unknown:
        return pulse.indicators, [f"unknown operation(s): {', '.join(sorted(map(str, unknown)))}"]
    errors: dict[str, Any] = {}
    by_id = {i.id: i for i in pulse.indicators}

    def ids(items: Any, op: str) -> list[Any]:
        if items is None:
            return []
        if not isinstance(items, list):
            errors[op] = ["Expected a list of items."]
            return []
        return list(items)

    removed: set[int] = set()
    remove_errors: list[dict[str, Any]] = []
    for item in ids(change.get("remove"), "remove"):
        ind_id = item.get("id") if isinstance(item, Mapping) else item
        if isinstance(ind_id, int) and not isinstance(ind_id, bool) and ind_id in by_id:
            removed.add(ind_id)
            remove_errors.append({})
        else:
            remove_errors.append({"id": [f"no indicator with id {ind_id!r} in this pulse"]})
    if any(remove_errors):
        errors["remove"] = remove_errors

    edited: dict[int, Indicator] = {}
    edit_errors: list[dict[str, Any]] = []
    for item in ids(change.get("edit"), "edit"):
        ind_id = item.get("id") if isinstance(item, Mapping) else None
        if not isinstance(item, Mapping) or not isinstance(ind_id, int) or ind_id not in by_id:
            edit_errors.append({"id": [f"no indicator with id {ind_id!r} in this pulse"]})
            continue
        old = by_id[ind_id]
        merged = {k: v for k, v in indicator_to_otx(old).items() if k != "id"}
        for key in _INDICATOR_EDIT_FIELDS:
            if key in item:
                merged[key] = item[key]
        if merged.get("expiration") == "":
            merged["expiration"] = None
        try:
            new = indicator_from_otx(merged, where="indicator")
        except OTXFormatError as exc:
            path, _, message = str(exc).partition(": ")
            edit_errors.append({path.rsplit(".", 1)[-1]: [message]})
            continue
        edited[ind_id] = replace(new, id=ind_id, created=old.created)
        edit_errors.append({})
    if any(edit_errors):
        errors["edit"] = edit_errors

    added, add_errors = parse_indicators(ids(change.get("add"), "add"), now)
    existing = {(i.type, i.indicator) for i in pulse.indicators if i.id not in removed}
    if add_errors is None:
        dupes = [
            {"indicator": [f"{i.indicator!r} is already in this pulse"]}
            if (i.type, i.indicator) in existing
            else {}
            for i in added
        ]
        add_errors = dupes if any(dupes) else None
    if add_errors is not None:
        errors["add"] = add_errors
    if errors:
        return pulse.indicators, errors
    kept = [edited.get(i.id or 0, i) for i in pulse.indicators if i.id not in removed]
    return tuple(kept + added), None
