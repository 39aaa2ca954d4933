"""Record builders shared by every producer of a record kind (one place per kind)."""

from __future__ import annotations

import time
from typing import Any


def dead_letter(stage: str, reason_code: str, reason: str, source_topic: str, source_partition: int,
                source_offset: int, key: Any, value: Any, now_ms: int | None = None) -> dict[str, Any]:
    """A DeadLetter record (``schemas/dead_letter.avsc``): the reason, where the input came from and its
    original bytes (anything else as its UTF-8 text).

    >>> record = dead_letter("replay", "malformed_row", "bad", "f.csv", -1, 3, None, b"x,y", now_ms=1)
    >>> record["source_offset"], record["value"], record["error_time_ms"]
    (3, b'x,y', 1)
    """
    return {
        "reason": reason,
        "reason_code": reason_code,
        "stage": stage,
        "source_topic": source_topic,
        "source_partition": int(source_partition),
        "source_offset": int(source_offset),
        "key": key if isinstance(key, bytes) else None,
        "value": value if isinstance(value, bytes) else bytes(str(value), "utf-8"),
        "error_time_ms": int(time.time() * 1000) if now_ms is None else now_ms,
    }
