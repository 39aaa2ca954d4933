"""The variance channel's sequential test (streams.drift.cusum, ``LIVELEARN_DRIFT_VARIANCE_TEST=cusum``)
on long real series, alone: alarms where nothing was injected and threefold bursts spliced in.

Why apart from bench/drift_bursts.py (the windowed channel, through the feature engine and the drift
monitor): the detector reads only the one-minute log returns of the closes, so a month runs in
seconds and several thresholds fit in one run. ``LIVELEARN_DRIFT_VARIANCE_TEST=cusum
bench/drift_bursts.py`` measures the same detector as a worker runs it, its alerts de-duplicated into
incidents. The figures in streams.drift.cusum's docstring come from here and from drift_bursts.py.

Bursts as bench/drift_bursts.py injects them: from every ``--every``-th event once ``--warmup-hours``
have passed, a copy of the detector as it was there meets the next ``--after`` returns x3; found = an
alarm within them. Alarms are counted on the unmodified series. Months over twice the bound: a file's
alarms per 10k events above 0.8 (the windowed channel's bound is 0.4).

Usage: python bench/variance_cusum.py --data PATH... [--thresholds 40,50] [--half-life 720]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import statistics
from pathlib import Path

from common import result

from connectors.recorded import input_files, read_file
from streams.drift.budget import poisson_interval
from streams.drift.cusum import VolatilityCusum

HOUR_MS = 3_600_000


def returns(path: Path) -> tuple[list[float], list[int]]:
    """One-minute log returns of the closes (price ticks of a kline file) and each one's event time."""
    ticks = [item.tick for item in read_file(path) if item.tick is not None and item.tick["kind"] != "BOOK_TICKER"]
    out, times = [], []
    for before, tick in itertools.pairwise(ticks):
        out.append(math.log(tick["price"] / before["price"]))
        times.append(tick["event_time_ms"])
    return out, times


def measure(series: list[tuple[str, list[float], list[int]]], h: float, half_life: float, every: int, after: int,
            warmup_hours: float) -> dict:
    alarms = events = over = found = 0
    delays: list[int] = []
    for _, r, times in series:
        detector, fired = VolatilityCusum(h, half_life, warmup_hours), 0
        for i, (value, time_ms) in enumerate(zip(r, times, strict=True)):
            if i % every == 0 and time_ms - times[0] > warmup_hours * HOUR_MS:
                twin = copy.deepcopy(detector)
                hit = next((j - i + 1 for j in range(i, min(i + after, len(r)))
                            if twin.update(3 * r[j], times[j]) is not None), None)
                found += hit is not None
                delays.append(after if hit is None else hit)
            fired += detector.update(value, time_ms) is not None
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
    parser.add_argument("--thresholds", default="40,50", help="CUSUM thresholds h, comma-separated")
    parser.add_argument("--half-life", type=float, default=720.0, help="the level's half-life in events")
    parser.add_argument("--every", type=int, default=1500)
    parser.add_argument("--after", type=int, default=200)
    parser.add_argument("--warmup-hours", type=float, default=48.0)
    args = parser.parse_args()
    series = []
    for path in input_files([Path(p) for p in args.data]):
        r, hours = returns(path)
        series.append((path.name, r, hours))
    for h in (float(x) for x in args.thresholds.split(",")):
        result("variance_cusum", **measure(series, h, args.half_life, args.every, args.after, args.warmup_hours))


if __name__ == "__main__":
    main()
