"""Log lines of one kind in full while they are few, then at most one a minute that says how many were
left out.

Why: every dead letter was logged as a warning of its own. A producer that sends a wrong record
format, or a replay of the same file twice (every tick of the second copy is older than the last one
applied), dead-letters every record: a backtest of 60,000 such records wrote 30,000 warning lines,
and a worker writes one per record for as long as it lasts, burying every other line of its log. Each
dead letter is still a record on the dead-letters topic and counted in
``livelearn_dead_letters_total``; the log keeps the first ones of each kind whole, then a line a minute
with the count of those it left out. The tracebacks of a defect that fails every event (each event
dead-lettered as ``internal_error``, :mod:`agents.steps`) follow the same rule.

>>> times = iter([0.0, 1.0, 2.0, 3.0, 61.0, 62.0])
>>> lines = LogThrottle(first=2, every_s=60.0, clock=lambda: next(times))
>>> [lines.admit("featurize/late_event") for _ in range(6)]
[0, 0, None, None, 2, None]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class LogThrottle:
    """Per kind of line: :meth:`admit` says whether to log one and how many were left out before it."""

    __slots__ = ("first", "every_s", "_clock", "_kinds")

    def __init__(self, first: int = 20, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        if first < 1 or every_s < 0:
            raise ValueError("first must be >= 1 line and every_s >= 0 seconds")
        self.first, self.every_s, self._clock = first, every_s, clock
        self._kinds: dict[Hashable, list[float]] = {}  # kind -> [lines logged, left out since, when last logged]

    def admit(self, kind: Hashable) -> int | None:
        """None: leave this line out. Otherwise log it, saying how many of its kind were left out since
        the last one logged (0: none)."""
        now = self._clock()
        state = self._kinds.get(kind)
        if state is None:
            state = self._kinds[kind] = [0, 0, now]
        logged, left_out, last = state
        if logged < self.first or now - last >= self.every_s:
            state[:] = [logged + 1, 0, now]
            return int(left_out)
        state[1] = left_out + 1
        return None
