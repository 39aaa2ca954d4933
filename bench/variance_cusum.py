"""A candidate for the variance channel, measured beside it and not adopted yet: a one-sided CUSUM for a
threefold rise of one-minute volatility.

Why look: on real months the variance channel's windowed test sits on one trade-off curve whatever
knob moves (docs/STATUS.md, #15): at its default 0.75 VARIANCE alerts per 10k events (bound 0.4) it
finds 72% of injected x3 bursts within 200 events, after 119 events at the median. A windowed test
needs its current window mostly inside a burst before its mean moves enough; a CUSUM accumulates the
log-likelihood ratio of the burst from its first event and reports as soon as the sum crosses ``h``
(Page 1954; Lorden 1971: among detectors with the same mean time between false alarms on independent
data, the smallest worst-case delay).

What runs here (plain Python, one stream per file, nothing of the product's drift code):

* ``z**2 = r**2 / (season * level)`` for each one-minute log return ``r`` of the close: ``season`` the
  hour's mean ``r**2`` on past days (an exponential mean of daily means, a week's weight; the current
  hour enters once it is over, so that a burst is not measured against itself: folded in event by
  event, a profile built over two or three days took in a third of a burst within 20 events) over
  the mean of the hours; ``level`` an exponential mean of the deseasonalised ``r**2`` with half-life
  ``--half-life`` events, updated after the event is scored;
* ``S = max(0, S + min(z**2, 9) * 4/9 - log 3)``: the Gaussian log-likelihood ratio of a scale x3
  against x1, each event's square capped at 9 (one return of 10 sigma is no burst); alarm when
  ``S > h``, then ``S = 0`` and 200 events without alarms (the channel's re-base, roughly);
* no alarm in the first two days (``--warmup-hours``), while the hour profile fills.

Bursts as bench/drift_bursts.py injects them: from every ``--every``-th event after the warm-up, a
copy of the detector as it was there meets the next ``--after`` returns x3; found = an alarm within
them. Alarms are counted on the unmodified series. Months over twice the bound: a file's alarms per
10k events above 0.8.

Usage: python bench/variance_cusum.py --data PATH... [--thresholds 30,40] [--half-life 720]
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
from pathlib import Path

from common import result

from connectors.recorded import input_files, read_file
from streams.drift.budget import poisson_interval

HOUR_MS = 3_600_000
CAP = 9.0
LOG3 = math.log(3.0)


class Cusum:
    """The detector of the module docstring, one stream."""

    __slots__ = ("h", "level_rate", "warmup", "s", "level", "hours", "days", "seen", "hold", "hour", "sum", "n")

    def __init__(self, h: float, half_life: float, warmup: int):
        self.h, self.warmup = h, warmup
        self.level_rate = 1 - 0.5 ** (1 / half_life)
        self.s, self.level, self.seen, self.hold = 0.0, 0.0, 0, 0
        # Per UTC hour: the mean r**2 of the hour on past days (a week's exponential mean of daily means)
        # and how many days it holds; the current hour's sum and count, folded in once it is over, so
        # that a burst does not enter the profile it is measured with.
        self.hours, self.days, self.hour, self.sum, self.n = [0.0] * 24, [0] * 24, None, 0.0, 0

    def copy(self) -> Cusum:
        twin = Cusum.__new__(Cusum)
        for name in Cusum.__slots__:
            setattr(twin, name, getattr(self, name))
        twin.hours, twin.days = list(self.hours), list(self.days)
        return twin

    def step(self, r: float, hour: int) -> bool:
        squared = r * r
        self.seen += 1
        if hour != self.hour:
            if self.hour is not None and self.n:
                past = self.hour
                self.days[past] += 1
                self.hours[past] += max(1 / self.days[past], 1 / 7) * (self.sum / self.n - self.hours[past])
            self.hour, self.sum, self.n = hour, 0.0, 0
        self.sum, self.n = self.sum + squared, self.n + 1
        known = [m for m, d in zip(self.hours, self.days, strict=True) if d]
        season = self.hours[hour] / max(sum(known) / len(known), 1e-30) if self.days[hour] else 1.0
        deseasoned = squared / max(season, 1e-3)
        alarm = False
        if self.seen > self.warmup:
            self.s = max(0.0, self.s + min(deseasoned / max(self.level, 1e-30), CAP) * (1 - 1 / 9) / 2 - LOG3)
            if self.hold:
                self.hold, self.s = self.hold - 1, 0.0
            elif self.s > self.h:
                alarm, self.s, self.hold = True, 0.0, 200
        # The mean of all events so far until the half-life's weight is reached (no first value dominating).
        self.level += max(1 / self.seen, self.level_rate) * (deseasoned - self.level)
        return alarm


def returns(path: Path) -> tuple[list[float], list[int]]:
    """One-minute log returns of the closes (price ticks of a kline file) and each one's UTC hour."""
    ticks = [item.tick for item in read_file(path) if item.tick is not None and item.tick["kind"] != "BOOK_TICKER"]
    out, hours = [], []
    for before, tick in itertools.pairwise(ticks):
        out.append(math.log(tick["price"] / before["price"]))
        hours.append(tick["event_time_ms"] // HOUR_MS % 24)
    return out, hours


def measure(series: list[tuple[str, list[float], list[int]]], h: float, half_life: float, every: int, after: int,
            warmup: int) -> dict:
    alarms = events = over = found = 0
    delays: list[int] = []
    for _, r, hours in series:
        detector, fired = Cusum(h, half_life, warmup), 0
        for i, (value, hour) in enumerate(zip(r, hours, strict=True)):
            if i > warmup and i % every == 0:
                twin = detector.copy()
                hit = next((j - i + 1 for j in range(i, min(i + after, len(r))) if twin.step(3 * r[j], hours[j])),
                           None)
                found += hit is not None
                delays.append(after if hit is None else hit)
            fired += detector.step(value, hour)
        alarms, events = alarms + fired, events + len(r)
        over += fired / max(len(r), 1) * 1e4 > 0.8
    low, high = poisson_interval(alarms)
    hits = [d for d in delays if d < after]
    return {"threshold": h, "half_life_events": half_life, "alarms": alarms, "events": events,
            "per_10k": alarms / events * 1e4, "per_10k_interval": [low / events * 1e4, high / events * 1e4],
            "files": len(series), "files_over_twice_the_bound": over, "bursts": len(delays), "found": found,
            "median_delay_found": statistics.median(hits) if hits else None,
            "median_delay_misses_as_after": statistics.median(delays) if delays else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="kline files or folders (a month each, say)")
    parser.add_argument("--thresholds", default="30,40", help="CUSUM thresholds h, comma-separated")
    parser.add_argument("--half-life", type=float, default=720.0, help="the level's half-life in events")
    parser.add_argument("--every", type=int, default=1500)
    parser.add_argument("--after", type=int, default=200)
    parser.add_argument("--warmup-hours", type=float, default=48.0)
    args = parser.parse_args()
    series = []
    for path in input_files([Path(p) for p in args.data]):
        r, hours = returns(path)
        series.append((path.name, r, hours))
    warmup = int(args.warmup_hours * 60)
    for h in (float(x) for x in args.thresholds.split(",")):
        result("variance_cusum", **measure(series, h, args.half_life, args.every, args.after, warmup))


if __name__ == "__main__":
    main()
