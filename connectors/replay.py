"""Replay of recorded market data into Kafka: every tick of some files (:mod:`connectors.recorded`),
merged in event-time order, produced to a sink, as fast as the broker takes them or at a multiple of
their recorded pace, with a progress bar and a count of what was read, produced, rejected (dead-lettered
with the reason) and skipped.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from connectors.recorded import opened, two_markets
from connectors.status_line import StatusLine


@dataclass
class ReplayStats:
    read: int = 0
    produced: int = 0
    rejected: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    filtered: int = 0

    @property
    def reject_ratio(self) -> float:
        """Rejected rows over rows that were meant to be ticks (skips such as depth updates excluded)."""
        rejected = sum(self.rejected.values())
        considered = self.read - sum(self.skipped.values())
        return rejected / considered if considered else 0.0

    def summary(self) -> str:
        lines = [f"rows read {self.read}, produced {self.produced}, rejected {sum(self.rejected.values())}, "
                 f"skipped {sum(self.skipped.values())} (not ticks), filtered out {self.filtered} (symbols)"]
        for code, n in sorted(self.rejected.items()):
            lines.append(f"  rejected {code}: {n}")
        for what, n in sorted(self.skipped.items()):
            lines.append(f"  skipped {what}: {n}")
        return "\n".join(lines)


class Progress:
    """A progress bar on stderr: rows, rate and ETA (redrawn on a terminal, whole lines in a log:
    :class:`connectors.status_line.StatusLine`)."""

    def __init__(self, total: int, stream=None, every_s: float = 0.5, enabled: bool = True):
        self.total = total
        self.line = StatusLine(stream, every_s=every_s, enabled=enabled)
        self.started = time.monotonic()

    def _text(self, done: int) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        width = 30
        filled = int(width * done / self.total) if self.total else width
        return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} rows {rate:,.0f}/s ETA {eta:5.1f}s"

    def update(self, done: int, force: bool = False) -> None:
        if self.line.due(force):
            self.line.write(self._text(done))

    def close(self, done: int) -> None:
        self.line.close(self._text(done) if self.line.enabled else None)


def replay(paths: list[Path], sink, speed: float | None = None, symbols: set[str] | None = None,
           progress: bool = True, sleep: Callable[[float], None] = time.sleep, fmt: str = "auto",
           symbol: str | None = None, clock: Callable[[], float] = time.monotonic, order: str = "time") -> ReplayStats:
    """Produce every tick of ``paths`` to ``sink`` in event-time order (websocket captures with
    ``order="received"`` in the order received: :data:`connectors.recorded.ORDERS`).

    ``speed`` = None (max) sends as fast as the broker takes it; otherwise inter-arrival times are
    kept, divided by ``speed``. Raises ``ValueError`` before sending anything when two files hold one
    pair name of two markets (:func:`connectors.recorded.two_markets`).
    """
    problem = two_markets(paths, symbol)
    if problem is not None:
        raise ValueError(problem)
    files = opened(paths, fmt, symbol, order)
    total = sum(f.count for f in files)
    stats = ReplayStats()
    bar = Progress(total, enabled=progress)
    wall_start = clock()
    first_event: int | None = None
    for done, item in enumerate(heapq.merge(*files), 1):
        stats.read += 1
        if item.tick is None:
            if item.reason_code == "skip":
                stats.skipped[item.reason] += 1
            else:
                stats.rejected[item.reason_code] += 1
                sink.reject(item.reason_code, item.reason, item.origin, item.line, item.raw)
            continue
        tick = item.tick
        if symbols and tick["symbol"] not in symbols:
            stats.filtered += 1
            continue
        if speed is not None:
            if first_event is None:
                first_event = item.event_time_ms
            due = wall_start + (item.event_time_ms - first_event) / 1000.0 / speed
            delay = due - clock()
            if delay > 0:
                sink.waiting(delay)
                sleep(delay)
        sink.send(tick, tick["symbol"], tick["event_time_ms"])
        stats.produced += 1
        bar.update(done)
    sink.flush()
    bar.close(stats.read)
    return stats
