"""Volatility bursts at many moments of long real series, and the alerts where nothing was injected:
the variance channel's trade-off in one run.

Each file is read whole as one series (a month of one-minute klines is one series, not its days) and
fed through the feature engine and the drift monitor only (no models: the FEATURE and VARIANCE
channels, what `livelearn evaluate` counts for them). Two measures per file:

* FIRING alerts per channel on the unmodified series;
* from every ``--every``-th event once ``--warmup-hours`` (two days) have passed, a deep copy of the
  engine and monitor as they were there meets the next ``--after`` events with log-price moves x3
  (bench/drift_real.py's ``scale_log_moves``); found = a VARIANCE or FEATURE alert naming a
  price-derived feature within them.

Where bench/drift_real.py's ``--only bursts_throughout`` copies the whole pipeline from every fourth
hour (2,724 bursts on sixteen real months, about 16 minutes here), this samples the monitor alone
more densely (every 1,500th event: 422 on the same months, about a minute with two processes): the
figures docs/STATUS.md gives for the variance channel's settings (memory of falls, late pooling of its
serial correlation) come from here. Also prints, per file, which state the variance channel was in at
each burst (an incident's reference filling, a fall's remembered level, neither) with the share found.

``--days`` instead cuts every file into its UTC days and runs each day on its own from a fresh engine and
monitor, as daily dumps (the shipped ``SYMBOL-1m-YYYY-MM-DD`` files) are read: FIRING alerts per channel
pooled with an exact Poisson 95% interval and the share of days with one (the per-file measure of
bench/drift_real.py, on many more days), and log moves x3 from the event where bench/drift_real.py
injects them into the shipped days (1,200 with the default settings) in every day with ``--after``
events left: found = an alert naming a price-derived feature within the rest of the day. On the 58 real
months of docs/STATUS.md #15 (1,712 days, 2026-12-06, default settings, one run): VARIANCE 141 = 0.57
[0.48, 0.68] per 10k, on 8.2% of the days, every one between 17:00 and 24:00 UTC (the windowed test: a
fresh monitor skips 500 events and takes the next 500 as its reference, so a day is tested from about
17:00 on); FEATURE 9 = 0.04 [0.02, 0.07], on 0.5%; the bursts found in 1,419 of 1,712 days, median 100.
Measured and not adopted: the CUSUM from eight hours on instead of two days (no hour profile on a
single day), 63 VARIANCE alerts (0.26 [0.20, 0.33], 3.7% of days) but bursts found in 1,037, median 75:
another point on the same trade-off, and one of the four shipped days' bursts missed.

Usage: python bench/drift_bursts.py --data PATH... [--every 1500] [--after 200] [--warmup-hours 48] [--jobs N] [--days]
Settings from the environment as a worker reads them (``LIVELEARN_DRIFT_QUIET_SPELL_HOURS=72`` to
compare a setting).
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections import Counter
from pathlib import Path

from common import Processes, result
from drift_real import change_point, names_price, scale_log_moves

from agents.app import pipeline_config
from agents.settings import Settings
from connectors.recorded import input_files, read_file
from streams.drift import DriftMonitor
from streams.drift.budget import poisson_interval
from streams.features import FeatureEngine

HOUR_MS = 3_600_000


def _fired(engine: FeatureEngine, monitor: DriftMonitor, tick: dict, names: tuple[str, ...]) -> list[dict]:
    vector = engine.update(tick)
    if vector is None:
        return []
    return [a for a in monitor.update_features(vector["values"], vector["event_time_ms"], names)
            if a["status"] == "FIRING"]


def _burst_found(engine: FeatureEngine, monitor: DriftMonitor, ticks: list[dict], names: tuple[str, ...]) -> int | None:
    """The events after which a copy of ``engine`` and ``monitor`` finds ``ticks`` with log moves x3 from
    the first on (an alert naming a price-derived feature), or None; the originals are left as they were."""
    engine, monitor = copy.deepcopy((engine, monitor))
    for k, changed in enumerate(scale_log_moves(ticks, 1, 3.0)):
        fired = _fired(engine, monitor, changed, names)
        if any(a["kind"] in ("VARIANCE", "FEATURE") and names_price(a) for a in fired):
            return k
    return None


def _state(monitor: DriftMonitor) -> str:
    channel = monitor.channels.get("VARIANCE")
    if channel is None:
        return "sequential test"  # LIVELEARN_DRIFT_VARIANCE_TEST=cusum
    if channel.reference is None or channel.refill_at is not None:
        return "reference filling"
    return "a fall remembered" if channel.ceiling is not None else "neither"


def series(job: tuple[Path, Settings, int, int, float]) -> tuple[str, Counter, list[tuple[int | None, str]], int]:
    """One file: FIRING alerts per channel, each burst's delay (None: not found) and the state it met."""
    path, settings, every, after, warmup_hours = job
    config = pipeline_config(settings)
    names = config.drift_features
    ticks = [item.tick for item in read_file(path) if item.tick is not None]
    if not ticks:
        return path.name, Counter(), [], 0
    engine, monitor = FeatureEngine(), DriftMonitor(ticks[0]["symbol"], config.drift)
    start = ticks[0]["event_time_ms"]
    alerts: Counter[str] = Counter()
    bursts: list[tuple[int | None, str]] = []
    for i, tick in enumerate(ticks):
        if every and i % every == 0 and tick["event_time_ms"] - start > warmup_hours * HOUR_MS and len(ticks) - i > after:
            bursts.append((_burst_found(engine, monitor, ticks[i:i + after], names), _state(monitor)))
        alerts.update(a["kind"] for a in _fired(engine, monitor, tick, names))
    return path.name, alerts, bursts, len(ticks)


def days(job: tuple[Path, Settings, int, int]) -> tuple[str, dict[str, list[int]], list[int], list[int | None]]:
    """One file cut into its UTC days, each run on its own from a fresh engine and monitor, as a daily
    dump (the shipped SYMBOL-1m-YYYY-MM-DD files) is: FIRING alerts per channel per day, each day's
    length, and where a day has ``after`` events past event ``at`` (0: none), the delay after which a
    copy of its monitor there finds log moves x3 from then on (None: not within them)."""
    path, settings, at, after = job
    config = pipeline_config(settings)
    names = config.drift_features
    by_day: dict[int, list[dict]] = {}
    for item in read_file(path):
        if item.tick is not None:
            by_day.setdefault(item.tick["event_time_ms"] // (24 * HOUR_MS), []).append(item.tick)
    per_day: dict[str, list[int]] = {}
    lengths: list[int] = []
    delays: list[int | None] = []
    for k, (_, ticks) in enumerate(sorted(by_day.items())):
        engine, monitor = FeatureEngine(), DriftMonitor(ticks[0]["symbol"], config.drift)
        lengths.append(len(ticks))
        for i, tick in enumerate(ticks):
            if at and i == at - 1 and len(ticks) - i > after:  # the at-th tick is the anchor, as drift_real counts
                delays.append(_burst_found(engine, monitor, ticks[i:], names))
            for alert in _fired(engine, monitor, tick, names):
                per_day.setdefault(alert["kind"], [0] * len(by_day))[k] += 1
    return path.name, per_day, lengths, delays


def daily(files: list[Path], settings: Settings, processes: Processes, after: int) -> None:
    """``--days``: the per-file measure of bench/drift_real.py on every day of long series."""
    def exact(count: int, events: int) -> list[float]:  # exact Poisson 95%, per 10k events
        return [round(bound / events * 1e4, 3) for bound in poisson_interval(count)]

    counts: Counter[str] = Counter()
    alerting: Counter[str] = Counter()
    n_days = events = 0
    at = change_point(settings)  # as bench/drift_real.py injects into the shipped days
    delays: list[int | None] = []
    for name, per_day, lengths, found in processes.map(days, [(p, settings, at, after) for p in files]):
        n_days += len(lengths)
        events += sum(lengths)
        delays += found
        for kind, alerts in per_day.items():
            counts[kind] += sum(alerts)
            alerting[kind] += sum(a > 0 for a in alerts)
        print(f"{name:32s} {len(lengths):3d} days  FIRING {({k: sum(v) for k, v in per_day.items()}) or '{}'}  "
              f"days with one {({k: sum(a > 0 for a in v) for k, v in per_day.items()}) or '{}'}", flush=True)
    for kind in sorted(counts):
        print(f"{kind}: {counts[kind]} alerts in {n_days} days ({events} events): {counts[kind] / events * 1e4:.2f} "
              f"{exact(counts[kind], events)} per 10k; {alerting[kind]} days with one ({alerting[kind] / n_days:.1%})")
    hits = [d for d in delays if d is not None]
    median = statistics.median(hits) if hits else None
    print(f"volatility x3 from event {at} of each day with {after} events after it: found in {len(hits)} of "
          f"{len(delays)} days, median delay {median} where found", flush=True)
    result("drift_bursts_days", files=len(files), days=n_days, events=events, alerts=dict(counts),
           bursts_at=at, bursts=len(delays), found=len(hits), median_delay_found=median,
           per_10k={k: round(v / events * 1e4, 3) for k, v in counts.items()},
           per_10k_exact_95={k: exact(v, events) for k, v in counts.items()},
           days_with_an_alert=dict(alerting), variance_test=settings.drift_variance_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, metavar="PATH",
                        help="files or folders of long real series (a month of one-minute klines a file)")
    parser.add_argument("--every", type=int, default=1500, help="events between burst starts (0: none)")
    parser.add_argument("--after", type=int, default=200, help="events a burst has to be found in")
    parser.add_argument("--warmup-hours", type=float, default=48.0,
                        help="hours of a series before its first burst (the channels' references and memories fill)")
    parser.add_argument("--jobs", type=int, default=None, help="files run at once, each in its own process")
    parser.add_argument("--days", action="store_true",
                        help="instead: every UTC day of each file on its own, as daily dumps are read, with one "
                             "burst a day where bench/drift_real.py puts it into the shipped days")
    args = parser.parse_args()
    settings = Settings.from_env()
    files = input_files(args.data)
    if args.days:
        with Processes(args.jobs) as processes:
            daily(files, settings, processes, args.after)
        return
    totals: Counter[str] = Counter()
    delays: list[int | None] = []
    states: dict[str, list[int]] = {}
    events = 0
    with Processes(args.jobs) as processes:
        for name, alerts, bursts, n in processes.map(series, [(p, settings, args.every, args.after, args.warmup_hours)
                                                                  for p in files]):
            totals.update(alerts)
            events += n
            delays += [d for d, _ in bursts]
            for delay, state in bursts:
                states.setdefault(state, [0, 0])
                states[state][0] += delay is not None
                states[state][1] += 1
            found_here = sum(d is not None for d, _ in bursts)
            print(f"{name:32s} {n:6d} events  FIRING {dict(alerts) or '{}'}  bursts found {found_here} of {len(bursts)}",
                  flush=True)
            result("drift_bursts_series", file=name, events=n, alerts=dict(alerts), bursts=len(bursts), found=found_here)
    found = [d for d in delays if d is not None]
    misses_as_after = [args.after if d is None else d for d in delays]
    print(f"all: {events} events, FIRING {dict(totals)}; bursts found {len(found)} of {len(delays)}, median delay "
          f"{statistics.median(found) if found else '-'} where found, "
          f"{statistics.median(misses_as_after) if delays else '-'} with misses as {args.after}; by state "
          + ", ".join(f"{s} {f} of {n}" for s, (f, n) in sorted(states.items())), flush=True)
    result("drift_bursts", files=len(files), events=events, alerts=dict(totals), bursts=len(delays),
           found=len(found), median_delay_found=statistics.median(found) if found else None,
           median_delay_misses_as_after=statistics.median(misses_as_after) if delays else None,
           after=args.after, every=args.every, warmup_hours=args.warmup_hours,
           quiet_spell_hours=settings.drift_quiet_spell_hours,
           found_by_state={s: v for s, v in sorted(states.items())})


if __name__ == "__main__":
    main()
