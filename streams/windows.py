"""Fixed-length rolling windows with O(1) amortised updates.

These are the building blocks of :mod:`streams.features`. They keep running sums (and a sliding
Welford second moment) instead of re-reducing the window on every tick, and re-synchronise from the
stored window every ``RESYNC_EVERY`` updates so that floating-point drift stays bounded.

>>> w = RollingMoments(3)
>>> for x in (1.0, 2.0, 3.0, 4.0):
...     w.add(x)
>>> w.full, w.mean, round(w.variance(ddof=0), 12)
(True, 3.0, 0.666666666667)
>>> m = RollingExtremes(3)
>>> for x in (5.0, 1.0, 4.0, 2.0):
...     m.add(x, x)
>>> m.highest(), m.lowest()
(4.0, 1.0)
"""

from __future__ import annotations

from collections import deque

RESYNC_EVERY = 4096


class RollingMoments:
    """Mean and variance of the last ``size`` values (sliding Welford)."""

    __slots__ = ("size", "values", "pos", "count", "mean", "m2", "total", "since_resync")

    def __init__(self, size: int):
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.values = [0.0] * size
        self.pos = 0
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.total = 0.0
        self.since_resync = 0

    @property
    def full(self) -> bool:
        return self.count >= self.size

    def add(self, x: float) -> None:
        values = self.values
        pos = self.pos
        if self.count < self.size:
            self.count += 1
            delta = x - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (x - self.mean)
            self.total += x
        else:
            old = values[pos]
            old_mean = self.mean
            self.mean = old_mean + (x - old) / self.size
            self.m2 += (x - old) * (x - self.mean + old - old_mean)
            self.total += x - old
            self.since_resync += 1
            if self.since_resync >= RESYNC_EVERY:
                values[pos] = x
                self.pos = (pos + 1) % self.size
                self._resync()
                return
        values[pos] = x
        self.pos = (pos + 1) % self.size

    def _resync(self) -> None:
        n = self.count
        window = self.values if n >= self.size else self.values[:n]
        total = 0.0
        for v in window:
            total += v
        mean = total / n
        m2 = 0.0
        for v in window:
            m2 += (v - mean) * (v - mean)
        self.total, self.mean, self.m2, self.since_resync = total, mean, m2, 0

    def variance(self, ddof: int = 0) -> float:
        n = self.count
        if n - ddof <= 0:
            return 0.0
        m2 = self.m2
        return m2 / (n - ddof) if m2 > 0.0 else 0.0

    def oldest(self) -> float:
        """The value that the next ``add`` evicts (when full)."""
        return self.values[self.pos]


class RollingExtremes:
    """Highest high and lowest low over the last ``size`` bars (monotonic deques)."""

    __slots__ = ("size", "index", "highs", "lows")

    def __init__(self, size: int):
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.index = 0
        self.highs: deque[tuple[int, float]] = deque()
        self.lows: deque[tuple[int, float]] = deque()

    @property
    def full(self) -> bool:
        return self.index >= self.size

    def add(self, high: float, low: float) -> None:
        i = self.index
        highs, lows = self.highs, self.lows
        while highs and highs[-1][1] <= high:
            highs.pop()
        highs.append((i, high))
        while lows and lows[-1][1] >= low:
            lows.pop()
        lows.append((i, low))
        expired = i - self.size
        if highs[0][0] <= expired:
            highs.popleft()
        if lows[0][0] <= expired:
            lows.popleft()
        self.index = i + 1

    def highest(self) -> float:
        return self.highs[0][1]

    def lowest(self) -> float:
        return self.lows[0][1]


class RollingSum:
    """Sum of the last ``size`` values, re-summed exactly every ``RESYNC_EVERY`` updates."""

    __slots__ = ("size", "values", "pos", "count", "total", "since_resync")

    def __init__(self, size: int):
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.values = [0.0] * size
        self.pos = 0
        self.count = 0
        self.total = 0.0
        self.since_resync = 0

    @property
    def full(self) -> bool:
        return self.count >= self.size

    def add(self, x: float) -> None:
        pos = self.pos
        if self.count < self.size:
            self.count += 1
            self.total += x
        else:
            self.total += x - self.values[pos]
            self.since_resync += 1
        self.values[pos] = x
        self.pos = (pos + 1) % self.size
        if self.since_resync >= RESYNC_EVERY:
            total = 0.0
            for v in self.values:
                total += v
            self.total, self.since_resync = total, 0
