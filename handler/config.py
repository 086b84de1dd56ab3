"""The destination configuration: RudderStack's Gainsight settings, parsed and validated once."""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from errors import ConfigurationError

_HOST = re.compile(
    r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*)(:\d{1,5})?$"
)
# Gainsight's own hosts, regional ones included (acme.eu.gainsightcloud.com): the only ones
# trusted with the access key unless the stack's environment names another.
GAINSIGHT_HOST_SUFFIX = ".gainsightcloud.com"
# Secrets belong in SecureString parameters, never in the plain String config.
_SECRET_KEYS = {"accessKey": "ACCESS_KEY_PARAM", "sharedSecret": "SHARED_SECRET_PARAM"}
# Every key the destination config may hold. A key not listed is refused, not ignored: a typo
# such as eventNameMaps would otherwise silently drop the mapping. New settings are added here.
CONFIG_KEYS = frozenset(
    {
        "domain",
        "tenantId",
        "topicName",
        "contractId",
        "eventNameMap",
        "eventVersionMap",
        "personMap",
        "companyMap",
        "eventFilteringOption",
        "whitelistedEvents",
        "blacklistedEvents",
        "companyKey",
        "companyPersonMap",
        "timelineMap",
        "rollupMap",
    }
)
# Read by editors, not by the function: the example config names its JSON Schema.
IGNORED_KEYS = frozenset({"$schema"})
FILTERING_OPTIONS = ("disable", "whitelistedEvents", "blacklistedEvents")
# A Gainsight field name: it goes into the update call's query string (?keys=...), so nothing else.
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, slots=True)
class CompanyKey:
    """What identifies a company in Gainsight: a Company field, and where a group event holds its value."""

    field: str = "Name"
    trait: str | None = "name"  # the group event's trait holding the value; None: its groupId

    @property
    def source(self) -> str:
        return "groupId" if self.trait is None else f"traits.{self.trait}"


@dataclass(frozen=True, slots=True)
class TimelineActivity:
    """How one track event becomes a Timeline activity on its company."""

    activity_type: str
    subject: str  # templates: {{property}} is replaced by the event's property (see mapping.render)
    notes: str
    author: str  # a Gainsight user's email
    company_property: str | None = None  # the property naming the company; None: context.groupId
    events_framework: bool = False  # also published to the Events Framework


@dataclass(frozen=True, slots=True)
class Rollup:
    """How track events of one name are counted into one Events Framework event per entity and
    window instead of being published one by one."""

    window_seconds: int  # windows align to the UTC day: a whole number of them fits in it
    by: str  # "user" or "company"
    event_name: str  # of the published rollup
    event_version: str
    sums: tuple[str, ...] = ()  # numeric properties summed
    distinct: tuple[str, ...] = ()  # properties whose distinct values are listed


@dataclass(frozen=True, slots=True)
class Destination:
    base_url: str
    access_key: str = field(repr=False)
    shared_secret: str | None = field(repr=False, default=None)
    # Why there is no shared secret although one is configured (its parameter cannot be read): track
    # events for the Events Framework wait for it; everything else goes out. None: no such problem.
    secret_problem: str | None = None
    tenant_id: str | None = None
    topic_name: str | None = None
    contract_id: str | None = None
    # Keys are casefolded: RudderStack matches event names case-insensitively.
    event_names: Mapping[str, str] = field(default_factory=dict)
    event_versions: Mapping[str, str] = field(default_factory=dict)
    person_map: tuple[tuple[str, str], ...] = ()
    company_map: tuple[tuple[str, str], ...] = ()
    # RudderStack's event filtering for track events: "disable", or which names are allowed or blocked.
    filtering: str = "disable"
    filtered_names: frozenset[str] = frozenset()
    company_key: CompanyKey = CompanyKey()
    company_person_map: tuple[tuple[str, str], ...] = ()  # group trait -> the person's field on the company
    # Keys are casefolded, as for event_names.
    timeline: Mapping[str, TimelineActivity] = field(default_factory=dict)
    rollups: Mapping[str, Rollup] = field(default_factory=dict)  # keys casefolded, as for event_names

    def filters_out(self, event_name: str) -> bool:
        """Whether a track event of this name is kept out of Gainsight (and its quota)."""
        if self.filtering == "whitelistedEvents":
            return event_name.strip() not in self.filtered_names
        if self.filtering == "blacklistedEvents":
            return event_name.strip() in self.filtered_names
        return False


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip_literal(host: str) -> IpAddress | None:
    """The address `host` spells, however spelt: 169.254.169.254, 0xa9fea9fe, 2130706433, ::ffff:10.0.0.1."""
    try:
        address: IpAddress = ipaddress.ip_address(host)
    except ValueError:
        try:
            # inet_aton parses without resolving, and accepts every form getaddrinfo would (127.1, 0x7f.0.0.1).
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    address = _ip_literal(host)
    return address is not None and address.is_loopback


def _refusal(
    shown: str, host: str, port: int | None, allowed_hosts: Collection[str], allow_loopback: bool
) -> str | None:
    """Why the secrets must not be sent to `host`, or None when it may have them."""
    if _is_loopback(host):
        if allow_loopback:
            return None
        return f"domain {shown} is a loopback host, allowed only for local runs (ALLOW_LOOPBACK_GAINSIGHT=true)"
    address = _ip_literal(host)
    if address is not None:
        # Never an address, even allow-listed: the metadata service and private networks hand out credentials.
        if address.is_link_local:
            kind = "a link-local address (such as the cloud metadata service)"
        elif address.is_private or address.is_reserved or address.is_unspecified or address.is_multicast:
            kind = "a private or reserved address"
        else:
            kind = "an IP address"
        return f"domain {shown} is {kind}; the access key is only sent to a Gainsight host name"
    if host.endswith(GAINSIGHT_HOST_SUFFIX):  # _HOST guarantees a label before the suffix
        return None
    if (host if port in (None, 443) else f"{host}:{port}") in allowed_hosts:
        return None
    return (
        f"domain {shown} is not a Gainsight host (*{GAINSIGHT_HOST_SUFFIX}); a custom domain must also be named"
        " in the stack's GAINSIGHT_ALLOWED_HOSTS"
    )


def base_url(domain: str, *, allowed_hosts: Collection[str] = frozenset(), allow_loopback: bool = False) -> str:
    """Turn `domain` (a host, or https://host[:port]) into a base URL without a trailing slash.

    The access key goes wherever this points, and the destination config is a plain String
    parameter: only Gainsight's own hosts pass, plus `allowed_hosts` (exact host[:port], from the
    stack's environment) and loopback when `allow_loopback`. Nothing is resolved.

    Raises:
        ConfigurationError: when it is neither, has a path, query or fragment, names a host that
            may not have the secrets, or asks for plain http to a non-loopback host (outside a local
            run's allow-listed host:port).
    """
    value = domain.strip()
    if "@" in value:
        raise ConfigurationError("domain must not contain credentials (user:password@)")  # and is not echoed
    # The value is never echoed: what follows the host may carry a token.
    not_a_host = ConfigurationError("destination config key domain is not a host name or an https:// URL")
    try:
        parts = urlsplit(value if "://" in value else f"https://{value}")
    except ValueError:  # an unbalanced [ or ], a fullwidth sign that normalizes to / ? # @ or :
        raise not_a_host from None
    if parts.scheme not in ("https", "http") or not _HOST.match(parts.netloc):
        raise not_a_host
    shown = f"{parts.scheme}://{parts.netloc}"
    # Every API path is appended to the domain: a path here would turn every call into a 404.
    # What follows the host is not echoed, in case it carries a token.
    after_host = {"a path": bool(parts.path.strip("/")), "a query": "?" in value, "a fragment": "#" in value}
    extra = [name for name, present in after_host.items() if present]
    if extra:
        raise ConfigurationError(f"domain {shown} must not have {' or '.join(extra)}; give only https://host[:port]")
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"domain {shown} has a port out of range") from None
    host = parts.hostname or ""
    if (refusal := _refusal(shown, host, port, allowed_hosts, allow_loopback)) is not None:
        raise ConfigurationError(refusal)
    if parts.scheme == "http" and not _is_loopback(host) and not _local_http(host, port, allowed_hosts, allow_loopback):
        raise ConfigurationError(
            f"domain {shown} must use https (plain http is only allowed for loopback hosts, and in local runs"
            " for a host:port named in GAINSIGHT_ALLOWED_HOSTS)"
        )
    return shown


def _local_http(host: str, port: int | None, allowed_hosts: Collection[str], allow_loopback: bool) -> bool:
    """Whether a local run may speak plain http to an allow-listed host:port: a sandbox that a
    container reaches as host.docker.internal is not loopback. The stack never sets allow_loopback."""
    return allow_loopback and port is not None and f"{host}:{port}" in allowed_hosts


def _optional_text(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigurationError(f"destination config key {key} must be a string")
    return str(value).strip() or None


def _pairs(config: Mapping[str, Any], key: str) -> tuple[tuple[str, str], ...]:
    entries = config.get(key) or []
    if not isinstance(entries, list):
        raise ConfigurationError(f"destination config key {key} must be a list of {{'from', 'to'}} objects")
    pairs = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigurationError(f"destination config key {key}[{position}] must be an object")
        source, target = entry.get("from"), entry.get("to")
        if source in (None, "") and target in (None, ""):
            continue  # RudderStack's dashboard saves an empty row by default
        for name, value in (("from", source), ("to", target)):
            if not isinstance(value, str | int | float) or isinstance(value, bool) or str(value).strip() == "":
                raise ConfigurationError(f"destination config key {key}[{position}].{name} must be a non-empty string")
        pairs.append((str(source).strip(), str(target).strip()))
    return tuple(pairs)


def _unknown_key(key: str) -> str:
    # Compared casefolded, so DOMAIN still suggests domain; the secret keys are never suggested.
    known = {name.casefold(): name for name in CONFIG_KEYS}
    close = difflib.get_close_matches(key.casefold(), known, n=1)
    hint = f"did you mean {known[close[0]]}?" if close else "known keys: " + ", ".join(sorted(CONFIG_KEYS))
    return f"unknown destination config key {key} ({hint})"


def parse_destination(
    raw: str,
    access_key: str,
    shared_secret: str | None,
    *,
    allowed_hosts: Collection[str] = frozenset(),
    allow_loopback: bool = False,
) -> Destination:
    """Parse the JSON destination config and the secrets into a Destination; `allowed_hosts` and
    `allow_loopback` are as for base_url.

    Raises:
        ConfigurationError: naming the first bad or missing key.
    """
    try:
        config = json.loads(raw)
    except ValueError:
        raise ConfigurationError("destination config is not valid JSON") from None
    if not isinstance(config, dict):
        raise ConfigurationError("destination config must be a JSON object")
    for key, param in _SECRET_KEYS.items():
        if key in config:
            raise ConfigurationError(
                f"destination config key {key} must not hold a secret; store it in the SecureString named by {param}"
            )
    for key in config:
        if key not in CONFIG_KEYS and key not in IGNORED_KEYS:
            raise ConfigurationError(_unknown_key(key))
    domain = _optional_text(config, "domain")
    if domain is None:
        raise ConfigurationError("destination config key domain is required")
    if not access_key.strip():
        raise ConfigurationError("the access key parameter (ACCESS_KEY_PARAM) is empty")
    event_names = {source.casefold(): target for source, target in _pairs(config, "eventNameMap")}
    event_versions = {source.casefold(): target for source, target in _pairs(config, "eventVersionMap")}
    return Destination(
        base_url=base_url(domain, allowed_hosts=allowed_hosts, allow_loopback=allow_loopback),
        access_key=access_key.strip(),
        shared_secret=(shared_secret or "").strip() or None,
        tenant_id=_optional_text(config, "tenantId"),
        topic_name=_optional_text(config, "topicName"),
        contract_id=_optional_text(config, "contractId"),
        event_names=event_names,
        event_versions=event_versions,
        person_map=_pairs(config, "personMap"),
        company_map=_pairs(config, "companyMap"),
        **_filtering(config),
        company_key=_company_key(config),
        company_person_map=_pairs(config, "companyPersonMap"),
        timeline=_timeline(config, event_names.keys() & event_versions.keys()),
        rollups=_rollups(config),
    )


def _company_key(config: Mapping[str, Any]) -> CompanyKey:
    """`companyKey`: {"field": "ExternalId__gc", "from": "groupId" | "traits.<name>"}; Name when absent."""
    value = config.get("companyKey")
    if not value:
        return CompanyKey()
    shape = 'an object {"field": "<Company field>", "from": "groupId" or "traits.<name>"}'
    if not isinstance(value, dict):
        raise ConfigurationError(f"destination config key companyKey must be {shape}")
    unknown = sorted(set(value) - {"field", "from"})
    if unknown:
        raise ConfigurationError(f"destination config key companyKey.{unknown[0]} is not known; companyKey is {shape}")
    name, source = value.get("field"), value.get("from")
    if not isinstance(name, str) or not _FIELD_NAME.match(name.strip()):
        raise ConfigurationError(
            "destination config key companyKey.field must be a Gainsight field name (letters, digits, _)"
        )
    name = name.strip()
    if name == "Name":
        if source not in (None, "", "traits.name"):
            raise ConfigurationError("destination config key companyKey.from must be traits.name when field is Name")
        return CompanyKey()
    if source in (None, "", "groupId"):
        return CompanyKey(name, None)
    trait = source[len("traits.") :].strip() if isinstance(source, str) and source.startswith("traits.") else ""
    if not trait:
        raise ConfigurationError(
            f"destination config key companyKey.from must be groupId or traits.<name>, got {source!r}"
        )
    return CompanyKey(name, trait)


TIMELINE_KEYS = frozenset(
    {"eventName", "activityType", "subject", "notes", "author", "companyProperty", "eventsFramework"}
)


def _timeline(config: Mapping[str, Any], published: Collection[str]) -> dict[str, TimelineActivity]:
    """`timelineMap`: which track events become Timeline activities, and how; `published`: the
    (casefolded) event names the Events Framework mappings cover."""
    entries = config.get("timelineMap") or []
    if not isinstance(entries, list):
        raise ConfigurationError(
            "destination config key timelineMap must be a list of"
            " {'eventName', 'activityType', 'subject', 'notes', 'author'} objects"
        )
    activities: dict[str, TimelineActivity] = {}
    for position, entry in enumerate(entries):
        where = f"destination config key timelineMap[{position}]"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{where} must be an object")
        if not any(entry.get(key) not in (None, "") for key in TIMELINE_KEYS):
            continue  # RudderStack's dashboard saves an empty row by default
        unknown = sorted(set(entry) - TIMELINE_KEYS)
        if unknown:
            raise ConfigurationError(f"{where}.{unknown[0]} is not known (known: {', '.join(sorted(TIMELINE_KEYS))})")
        text = {}
        for key in ("eventName", "activityType", "subject", "notes", "author", "companyProperty"):
            value = entry.get(key)
            required = key in ("eventName", "activityType", "subject", "author")
            if value in (None, "") and not required:
                continue
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(f"{where}.{key} must be a non-empty string")
            text[key] = value.strip()
        if not _EMAIL.match(text["author"]):
            raise ConfigurationError(f"{where}.author must be a Gainsight user's email")
        both = entry.get("eventsFramework", False)
        if not isinstance(both, bool):
            raise ConfigurationError(f"{where}.eventsFramework must be true or false")
        name = text["eventName"].casefold()
        if name in activities:
            raise ConfigurationError(f"{where}.eventName {text['eventName']} is mapped twice")
        if both and name not in published:
            raise ConfigurationError(
                f"{where}.eventsFramework is true, but eventNameMap and eventVersionMap do not both map"
                f" {text['eventName']}"
            )
        activities[name] = TimelineActivity(
            activity_type=text["activityType"],
            subject=text["subject"],
            notes=text.get("notes", ""),
            author=text["author"],
            company_property=text.get("companyProperty"),
            events_framework=both,
        )
    return activities


ROLLUP_KEYS = frozenset({"eventName", "window", "by", "to", "sum", "distinct"})
_WINDOW = re.compile(r"^(\d+)([mhd])$")
_WINDOW_UNITS = {"m": 60, "h": 3600, "d": 86400}


def _rollups(config: Mapping[str, Any]) -> dict[str, Rollup]:
    """`rollupMap`: which track events are counted per entity and window, and published as one."""
    entries = config.get("rollupMap") or []
    shape = "{'eventName', 'window', 'by', 'to': {'eventName', 'eventVersion'}, 'sum', 'distinct'} objects"
    if not isinstance(entries, list):
        raise ConfigurationError(f"destination config key rollupMap must be a list of {shape}")
    timeline = {
        str(e.get("eventName", "")).strip().casefold() for e in config.get("timelineMap") or [] if isinstance(e, dict)
    }
    rollups: dict[str, Rollup] = {}
    for position, entry in enumerate(entries):
        where = f"destination config key rollupMap[{position}]"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{where} must be an object")
        unknown = sorted(set(entry) - ROLLUP_KEYS)
        if unknown:
            raise ConfigurationError(f"{where}.{unknown[0]} is not known (known: {', '.join(sorted(ROLLUP_KEYS))})")
        name = entry.get("eventName")
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"{where}.eventName must be a non-empty string")
        key = name.strip().casefold()
        if key in rollups:
            raise ConfigurationError(f"{where}.eventName {name.strip()} is rolled up twice")
        if key in timeline:
            raise ConfigurationError(f"{where}.eventName {name.strip()} is in timelineMap too: it is one or the other")
        window = _WINDOW.match(str(entry.get("window", "")).strip())
        seconds = int(window[1]) * _WINDOW_UNITS[window[2]] if window else 0
        if not seconds or 86400 % seconds:
            raise ConfigurationError(
                f"{where}.window must be minutes, hours or a day that divide a day evenly (15m, 1h, 1d),"
                f" got {entry.get('window')!r}"
            )
        by = entry.get("by", "user")
        if by not in ("user", "company"):
            raise ConfigurationError(f"{where}.by must be user or company, got {by!r}")
        to = entry.get("to")
        target = {
            k: v.strip()
            for k in ("eventName", "eventVersion")
            if isinstance(to, dict) and isinstance(v := to.get(k), str)
        }
        if len(target) != 2 or not all(target.values()):
            raise ConfigurationError(f"{where}.to must be {{'eventName', 'eventVersion'}}, both non-empty strings")
        lists = {}
        for list_key in ("sum", "distinct"):
            names = entry.get(list_key) or []
            if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
                raise ConfigurationError(f"{where}.{list_key} must be a list of property names")
            lists[list_key] = tuple(dict.fromkeys(n.strip() for n in names))
        rollups[key] = Rollup(
            window_seconds=seconds,
            by=by,
            event_name=target["eventName"],
            event_version=target["eventVersion"],
            sums=lists["sum"],
            distinct=lists["distinct"],
        )
    return rollups


def _filtering(config: Mapping[str, Any]) -> dict[str, Any]:
    """RudderStack's `eventFilteringOption` with its `whitelistedEvents` / `blacklistedEvents` lists."""
    option = _optional_text(config, "eventFilteringOption") or "disable"
    if option not in FILTERING_OPTIONS:
        raise ConfigurationError(
            f"destination config key eventFilteringOption must be one of {', '.join(FILTERING_OPTIONS)}, got {option!r}"
        )
    if option == "disable":
        return {}
    entries = config.get(option) or []
    if not isinstance(entries, list):
        raise ConfigurationError(f"destination config key {option} must be a list of {{'eventName'}} objects")
    names = set()
    for position, entry in enumerate(entries):
        name = entry.get("eventName") if isinstance(entry, dict) else None
        if name in (None, ""):
            continue  # RudderStack's dashboard saves an empty row by default
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(
                f"destination config key {option}[{position}].eventName must be a non-empty string"
            )
        names.add(name.strip())
    return {"filtering": option, "filtered_names": frozenset(names)}
