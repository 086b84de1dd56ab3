"""Reading what senders post: body decoding, size limits, write-key auth and event extraction. Pure."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from errors import EventRejected, RequestRejected
from mapping import has_message_id

MAX_BODY_BYTES = 4 * 1024 * 1024  # RudderStack's limit, checked after decompression
MAX_EVENT_BYTES = 32 * 1024
# Bounds the work of one request: looking up, delivering and, with Gainsight down, parking this many
# events, and answering one result each, fits the function's timeout, memory and Lambda's 6 MB answer.
MAX_EVENTS = 2500
# Deeper than any real event; code that walks an event (mapping, json.dumps) may then recurse safely.
MAX_EVENT_DEPTH = 64
_GZIP_MAGIC = b"\x1f\x8b"


def body_bytes(body: str | None, is_base64: bool, content_encoding: str | None) -> bytes:
    """The request body as plain bytes: base64 and gzip undone, at most MAX_BODY_BYTES.

    Raises:
        RequestRejected: 400 for bad base64 or gzip or an empty body, 413 when too large.
    """
    if not body:
        raise RequestRejected("request body is empty", 400, code="empty_body")
    if is_base64:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise RequestRejected("request body is not valid base64", 400, code="bad_base64") from None
    else:
        data = body.encode("utf-8", "surrogatepass")
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        data = _gunzip(data)
    elif encoding not in ("", "identity"):
        raise RequestRejected(f"Content-Encoding {encoding} is not supported (use gzip)", 415, code="bad_encoding")
    if len(data) > MAX_BODY_BYTES:
        raise RequestRejected(f"request body is larger than {MAX_BODY_BYTES} bytes", 413, code="too_large")
    return data


def _gunzip(data: bytes) -> bytes:
    """Every member of a gzip stream (`cat a.gz b.gz` is valid gzip), at most MAX_BODY_BYTES in all."""
    # Decompress at most one byte past the limit, across members, so a gzip bomb costs us no more.
    plain = bytearray()
    rest = data
    try:
        while True:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            plain += inflater.decompress(rest, MAX_BODY_BYTES + 1 - len(plain))
            if len(plain) > MAX_BODY_BYTES:
                raise RequestRejected(
                    f"request body is larger than {MAX_BODY_BYTES} bytes once decompressed", 413, code="too_large"
                )
            if not inflater.eof:
                raise RequestRejected("request body is not valid gzip (truncated)", 400, code="bad_gzip")
            rest = inflater.unused_data
            # gzip(1) ignores zero padding after the last member; anything else is not gzip.
            if not rest.strip(b"\0"):
                return bytes(plain)
            if not rest.startswith(_GZIP_MAGIC):
                raise RequestRejected("request body is not valid gzip (data after the end)", 400, code="bad_gzip")
    except zlib.error:
        raise RequestRejected("request body is not valid gzip", 400, code="bad_gzip") from None


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e999 parses as inf, which neither Gainsight's JSON nor ours can carry.
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError(f"number {shown} is out of range")
    return value


def parse_json(data: bytes) -> Any:
    """Parse a JSON body.

    Raises:
        RequestRejected: 400 naming the problem (bad UTF-8, malformed JSON, NaN, Infinity, 1e999,
            nesting too deep to parse).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestRejected(f"request body is not valid UTF-8 (byte {error.start})", 400, code="bad_utf8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        raise RequestRejected(
            f"request body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
            400,
            code="bad_json",
        ) from None
    except (ValueError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise RequestRejected(f"request body is not valid JSON: {reason}", 400, code="bad_json") from None


def events_of(payload: Any, path_type: str | None) -> list[Any]:
    """The events a body carries: `batch` for /v1/batch, the body itself for /v1/<type>.

    Raises:
        RequestRejected: 400 when the body is not an event or batch, or the batch is empty.
    """
    if not isinstance(payload, dict):
        raise RequestRejected("request body must be a JSON object", 400, code="not_an_object")
    if path_type is None:
        batch = payload.get("batch")
        if not isinstance(batch, list):
            raise RequestRejected("request body must have a batch array", 400, code="no_batch")
        if not batch:
            raise RequestRejected("batch is empty", 400, code="empty_batch")
        if len(batch) > MAX_EVENTS:
            raise RequestRejected(
                f"batch has {len(batch)} events; at most {MAX_EVENTS} per request", 413, code="too_many_events"
            )
        # Depth inside an event rejects that event alone (refused_events); elsewhere, the body.
        if any(nested_deeper(value, MAX_EVENT_DEPTH) for key, value in payload.items() if key != "batch"):
            raise RequestRejected(
                f"request body is nested deeper than {MAX_EVENT_DEPTH} levels outside its batch", 400, code="too_deep"
            )
        return batch
    event = dict(payload)
    event.pop("writeKey", None)
    if not event.get("type"):
        event["type"] = path_type
    return [event]


def with_message_ids(events: list[Any], new_id: Callable[[], str]) -> list[Any]:
    """Each event as sent, with a fresh messageId (`new_id()`) where it has none, as RudderStack's and
    Segment's HTTP APIs assign one: two identical events without one are two events, never one."""
    return [
        {**event, "messageId": new_id()} if isinstance(event, dict) and not has_message_id(event) else event
        for event in events
    ]


def nested_deeper(value: Any, levels: int) -> bool:
    """Whether `value` holds objects or arrays nested more than `levels` deep (itself counting as
    one). Iterative, so any depth json.loads accepted is safe to measure."""
    if not isinstance(value, dict | list):
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > levels:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def refused_events(events: list[Any], body_size: int) -> dict[int, EventRejected]:
    """The events that are refused before anything else looks at them, by index: over
    MAX_EVENT_BYTES (measured only when the body could hold one), or nested deeper than
    MAX_EVENT_DEPTH."""
    refused: dict[int, EventRejected] = {
        index: EventRejected(f"event is nested deeper than {MAX_EVENT_DEPTH} levels", code="too_deep")
        for index, event in enumerate(events)
        if nested_deeper(event, MAX_EVENT_DEPTH)
    }
    if body_size > MAX_EVENT_BYTES:
        refused |= {
            index: EventRejected(f"event is larger than {MAX_EVENT_BYTES} bytes", code="too_large", status_code=413)
            for index, event in enumerate(events)
            if index not in refused
            and len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
            > MAX_EVENT_BYTES
        }
    return refused


def write_key_from_header(authorization: str | None) -> str | None:
    """The write key in `Authorization: Basic base64(<writeKey>:)`, or None."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return decoded.partition(":")[0] or None


def write_key_from_body(payload: Any) -> str | None:
    """Segment's SDK sends `writeKey` inside the JSON body."""
    key = payload.get("writeKey") if isinstance(payload, dict) else None
    return key if isinstance(key, str) and key else None


def authorized(write_key: str | None, valid_keys: Iterable[str]) -> bool:
    """Constant-time check of a write key against every valid key (several allow rotation)."""
    if write_key is None:
        return False
    given = write_key.encode("utf-8", "surrogatepass")
    matched = False
    for key in valid_keys:
        matched |= hmac.compare_digest(given, key.encode("utf-8"))
    return matched


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header's value, whatever its case."""
    if not headers:
        return None
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)
