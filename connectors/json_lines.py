"""JSON lines from outside (``livelearn produce``): each line judged on its own, never the stream.

A producer that reads from a pipe must not lose what it has already accepted because a later line is
bad: every line becomes a tick (or a feedback event) or an :class:`InputError` with a reason code, and
the caller dead-letters the error and goes on. Lines are read in bounded pieces, so a line of any
length costs at most ``max_bytes`` of memory; an oversized line is rejected whole and its dead letter
keeps the first ``keep_bytes`` with the original length in the reason.

>>> parse_tick(b'{"symbol": "btcusdt", "kind": "TRADE", "event_time_ms": 1700000000000, "price": 1, "quantity": 2}')["symbol"]
'BTCUSDT'
>>> parse_tick(b'[1, 2]')
Traceback (most recent call last):
...
connectors.json_lines.InputError: invalid_input: a line must be one JSON object, got a list
>>> parse_feedback(b'{"symbol": "BTCUSDT", "prediction_id": "p1", "label": true}', now_ms=0)["label"]
1
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from streams.external import InvalidFeedback, check_feedback
from streams.ticks import InvalidTick, check_tick, make_tick

MAX_LINE_BYTES = 64 * 1024
KEEP_BYTES = 4 * 1024
_TICK_REQUIRED = ("symbol", "kind", "event_time_ms", "price")
_NUMBER_FIELDS = ("price", "quantity", "open", "high", "low", "quote_volume", "taker_buy_volume", "bid_price",
                  "bid_qty", "ask_price", "ask_qty", "receive_time_ms")
_INT_FIELDS = ("event_time_ms", "trade_count", "first_trade_id", "last_trade_id", "sequence_id", "receive_time_ms")
_TICK_FIELDS = frozenset(("symbol", "kind", "event_time_ms", "price", "quantity", "source", "open", "high", "low",
                          "quote_volume", "taker_buy_volume", "trade_count", "is_buyer_maker", "bid_price", "bid_qty",
                          "ask_price", "ask_qty", "first_trade_id", "last_trade_id", "sequence_id", "receive_time_ms"))


class InputError(ValueError):
    """A line that is not a valid record; ``code`` is the dead-letter reason code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Line:
    """One input line: its number, its bytes (the first ``keep`` of an oversized one) and its length."""

    number: int
    raw: bytes
    length: int

    @property
    def oversized(self) -> bool:
        return self.length > len(self.raw)


def read_lines(stream: IO[bytes], max_bytes: int = MAX_LINE_BYTES, keep_bytes: int = KEEP_BYTES) -> Iterator[Line]:
    """Lines of a binary stream without their newline; blank lines are skipped (numbers still count).
    A line longer than ``max_bytes`` is read to its end in pieces and yields its first ``keep_bytes``."""
    number = 0
    while True:
        piece = stream.readline(max_bytes + 1)
        if not piece:
            return
        number += 1
        length = len(piece)
        if length > max_bytes and not piece.endswith(b"\n"):
            head = piece[:keep_bytes]
            while piece and not piece.endswith(b"\n"):
                piece = stream.readline(max_bytes)
                length += len(piece)
            yield Line(number, head, length - (1 if piece.endswith(b"\n") else 0))
            continue
        raw = piece.rstrip(b"\r\n")
        if raw.strip():
            yield Line(number, raw, len(raw))


def _object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError("invalid_input", f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError("invalid_input", f"a line must be one JSON object, got {_kind(data)}")
    return data


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _number(data: dict[str, Any], name: str) -> None:
    value = data.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError("invalid_input", f"{name} must be a number, got {_kind(value)} ({_short(value)})")


def _integer(data: dict[str, Any], name: str) -> None:
    value = data.get(name)
    if value is None:
        return
    if isinstance(value, float) and value.is_integer():
        data[name] = value = int(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise InputError("invalid_input", f"{name} must be an integer, got {_kind(value)} ({_short(value)})")
    if not -2**63 <= value < 2**63:  # Avro's long
        raise InputError("invalid_value", f"{name} does not fit a 64-bit integer ({_short(value)})")


def _text(data: dict[str, Any], name: str) -> None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise InputError("invalid_input", f"{name} must be a string, got {_kind(value)} ({_short(value)})")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_tick(raw: bytes, max_bytes: int = MAX_LINE_BYTES) -> dict[str, Any]:
    """A validated tick from one JSON line, or :class:`InputError` (``InvalidTick`` codes kept)."""
    if len(raw) > max_bytes:
        raise InputError("oversized_line", f"line of {len(raw):,} bytes; at most {max_bytes:,}")
    data = _object(raw)
    missing = [name for name in _TICK_REQUIRED if data.get(name) is None]
    if missing:
        raise InputError("invalid_input", f"missing {', '.join(missing)}")
    unknown = sorted(set(data) - _TICK_FIELDS)
    if unknown:
        raise InputError("invalid_input", f"unknown field(s) {', '.join(unknown)}")
    for name in ("symbol", "kind", "source"):
        _text(data, name)
    for name in _NUMBER_FIELDS:
        _number(data, name)
    for name in _INT_FIELDS:
        _integer(data, name)
    if data.get("is_buyer_maker") is not None and not isinstance(data["is_buyer_maker"], bool):
        raise InputError("invalid_input", f"is_buyer_maker must be true or false, got {_short(data['is_buyer_maker'])}")
    fields = {k: v for k, v in data.items() if k not in ("symbol", "kind", "event_time_ms", "price", "quantity", "source")}
    try:
        tick = make_tick(data["symbol"], data["kind"].upper(), data["event_time_ms"], data["price"],
                         data.get("quantity") or 0.0, data.get("source") or "produce", **fields)
        check_tick(tick)
    except InvalidTick as exc:
        raise InputError(exc.code, str(exc).split(": ", 1)[1]) from None
    except OverflowError as exc:
        raise InputError("invalid_value", str(exc)) from None
    return tick


def _label(value: Any) -> int | None:
    """0/1, 0.0/1.0 and false/true are labels; anything else is refused."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    raise InputError("invalid_input", f"label must be 0 or 1 (or false/true), got {_short(value)}")


def parse_feedback(raw: bytes, now_ms: int, max_bytes: int = MAX_LINE_BYTES) -> dict[str, Any]:
    """A Feedback record from one JSON line, or :class:`InputError`."""
    if len(raw) > max_bytes:
        raise InputError("oversized_line", f"line of {len(raw):,} bytes; at most {max_bytes:,}")
    data = _object(raw)
    for name in ("symbol", "prediction_id", "source"):
        _text(data, name)
    for name in ("realised_return", "score"):
        _number(data, name)
    for name in ("event_time_ms", "feedback_time_ms"):
        _integer(data, name)
    if not data.get("symbol"):
        raise InputError("invalid_input", "feedback needs a symbol")
    if not data.get("prediction_id") and data.get("event_time_ms") is None:
        raise InputError("invalid_input", "feedback needs prediction_id or event_time_ms")
    label = _label(data.get("label"))
    if label is None and data.get("score") is None:
        raise InputError("invalid_input", "feedback needs a label or a score")
    record = {
        "prediction_id": data.get("prediction_id"),
        "symbol": data["symbol"].upper(),
        "event_time_ms": data.get("event_time_ms"),
        "label": label,
        "realised_return": data.get("realised_return"),
        "score": data.get("score"),
        "source": data.get("source") or "external",
        "feedback_time_ms": data.get("feedback_time_ms") or now_ms,
        "matured_tick_index": None,
    }
    try:
        check_feedback(record)  # what a worker would refuse is refused here, before it is produced
    except InvalidFeedback as exc:
        raise InputError("invalid_value", str(exc).split(": ", 1)[1]) from None
    return record
