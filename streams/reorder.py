"""The reorder window: ticks held briefly in event time and let out in event-time order.

Sources deliver slightly out of order (several websocket connections, a producer that retries, two
files merged by hand). Without a window a tick older than its symbol's last applied one is late:
dead-lettered, or with ``LIVELEARN_LATE_GRACE_MS`` applied at the last time. With a window of
``window_ms`` a tick is held until the newest event time admitted is ``window_ms`` past it, then let
out in event-time order (ties in arrival order), so any displacement smaller than the window is undone.
The price is latency: ``window_ms`` of event time. A tick far ahead (more than ``max_ahead_ms`` past
the newest) does not move the watermark (it would release everything at once); it waits to be let out
by :meth:`ReorderBuffer.flush` and judged by the tick gate. Each held tick keeps an opaque ``origin``
(where it came from) for its dead letter.

>>> buffer = ReorderBuffer(window_ms=1000)
>>> [t["n"] for t, _ in buffer.push({"event_time_ms": 5000, "n": 1}, None)]
[]
>>> [t["n"] for t, _ in buffer.push({"event_time_ms": 4500, "n": 2}, None)]
[]
>>> [t["n"] for t, _ in buffer.push({"event_time_ms": 6200, "n": 3}, None)]
[2, 1]
>>> [t["n"] for t, _ in buffer.flush()]
[3]
"""

from __future__ import annotations

import heapq
from typing import Any


class ReorderBuffer:
    __slots__ = ("window_ms", "max_ahead_ms", "held", "arrivals", "newest_ms")

    def __init__(self, window_ms: int, max_ahead_ms: int = 600_000):
        if window_ms < 0 or max_ahead_ms < 0:
            raise ValueError("window_ms and max_ahead_ms must be >= 0")
        self.window_ms, self.max_ahead_ms = window_ms, max_ahead_ms
        self.held: list[tuple[int, int, dict[str, Any], Any]] = []
        self.arrivals = 0
        self.newest_ms: int | None = None

    def __len__(self) -> int:
        return len(self.held)

    def push(self, tick: dict[str, Any], origin: Any) -> list[tuple[dict[str, Any], Any]]:
        """Hold a tick; returns the ticks (with their origins) the window lets out, oldest first."""
        time_ms = tick["event_time_ms"]
        heapq.heappush(self.held, (time_ms, self.arrivals, tick, origin))
        self.arrivals += 1
        if self.newest_ms is None or 0 < time_ms - self.newest_ms <= self.max_ahead_ms:
            self.newest_ms = time_ms
        return self._release(self.newest_ms - self.window_ms)

    def flush(self) -> list[tuple[dict[str, Any], Any]]:
        """Let out everything held (the end of a backtest or a file; an input that went quiet)."""
        return self._release(float("inf"))

    def _release(self, upto: float) -> list[tuple[dict[str, Any], Any]]:
        held, out = self.held, []
        while held and held[0][0] <= upto:
            _, _, tick, origin = heapq.heappop(held)
            out.append((tick, origin))
        return out
