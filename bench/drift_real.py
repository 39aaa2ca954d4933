"""Drift alerts on real market series: false alarms where nothing was injected, detections where something
was, and the cost.

Each series runs through the worker's own partition pipeline in process with default settings:

(a) unmodified: FIRING alerts per 10k events and channel on every shipped kline day and capture
    (trades + book tickers; each capture sorted by event time, then again in the order its lines were
    received, as a worker reading `live` met it, not pooled), on consecutive kline days of one symbol
    joined (the longest series), and
    on the pairs of one base asset together where the data hold several (every BASIS alert listed with
    the pair it names; none ship here), beside River's KSWIN and ADWIN on the returns, each at the sensitivity
    bench/drift_eval.py calibrates on synthetic streams (``--kswin-alpha``, ``--adwin-delta``), and
    beside Levene as the variance test (two-sided on every feature: the default before the
    volatility test);
(b) injected changes spliced into the kline days 200 events after the drift reference has filled:
    a volatility burst (log-price moves x3 from the change on; with the volatility test and with Levene), a mean shift of the returns (+0.5 sd of one-minute returns per
    event), and a basis de-peg: a group of three pairs built from one real series, each with its own
    small noise (0.5 bp), one of them shifted by 0.5%, 2% or 10% decaying slowly (time constant 720
    events; the pair that moves is the first, second or third of each event time in turn; a de-peg
    that wanders for most of the day (a random walk about 5% below its peers, 3-10% on these days)
    before it comes back; and no
    change at all while every pair falls 30 bp an event for 100 events, where nothing may alert):
    detection rate, median delay in events, and which symbols alerted (a volatility or
    mean-shift detection is an alert after the change naming a price-derived feature; one naming
    only volumes or order-flow signs is counted apart);
(c) quiet weekends: two weeks built from the longest run of consecutive kline days, weekends at 0.5,
    0.6 or 0.75 times their moves: alarms per 10k events and channel, with and without the variance
    channel's memory of a fall of volatility (streams.drift.checks.VarianceCheck);
(d) a de-peg in two weeks: three pairs built from that run of days, one of them de-pegged for three
    days (a wandering offset, 3-10% below its peers): alerts per 10k events per pair and channel, and
    the de-pegged pair's FEATURE and VARIANCE alerts after the de-peg ended;
(e) a clustered null: ten days of one-minute closes from a GARCH(1,1) with Student-t(4) innovations
    (persistence 0.98 and 0.99) on a real day's times, volumes and bar shapes, per seed (``--seeds``):
    alarms per 10k events and channel where volatility clusters but nothing changes;
(f) hours missing (an exchange's maintenance): 10:00-12:00 UTC cut from every kline day on its own, and
    from the first day of the longest run of consecutive days joined: alarms per 10k events and channel
    (``--only missing_hours``);
(g) distinct weeks: 21 days, each a real kline day mirrored or not, its bars reversed within the hour
    or not, its moves x0.75, 1 or 1.3, in three random orders (``--only distinct_weeks``): alarms per
    channel pooled with exact intervals, and how far volatility had risen where VARIANCE alerted;
(h) cost per event and drift feature (of those the data defines) of the feature and variance channels
    in the long run (a real day repeated, timed after the monitor's warm-ups: its reference and its
    variance CUSUM's two days), beside KSWIN's per update on the same events;
(i) a late burst: each run of consecutive kline days of one symbol joined, log moves x3 from 20:00 UTC
    of its last day with 200 events after it, met by a monitor that has run since the first day
    (learnt its intraday profile, re-based on falls and remembered them), not one a day old as in (b)
    (``--only late_bursts``);
(j) bursts throughout: the same runs of days, log moves x3 from every fourth hour of the days after the
    first (200 events after each), each met by a copy of the pipeline that ran the unmodified series
    until then: where (i) tests one moment, this tests the monitor in every state it passes through
    (a reference filling after a fall, a fall remembered, an incident open); the share found within
    200 events and the median delay, misses counted as 200 (``--only bursts_throughout``);
(k) bursts in the captures: log moves x3 from 40, 60 and 80% of each capture's ticks to its end, met by
    the pipeline that ran the capture until then: found, and the median delay in ticks and in event-time
    seconds (what ``LIVELEARN_DRIFT_PERSIST_S`` costs on ticks; ``--only capture_bursts``).

Prints one ``RESULT`` line per measure, and one (``drift_real_false_alarms_summary``) saying how many
unmodified series hold twice the bound and which channels of the others do not. A day of klines is
1,440 events, so one alarm in it is nine times twice a bound of 0.4 per 10k: the unmodified series are
also pooled (``drift_real_false_alarms_pooled``: every file on its own, and the consecutive days
joined), per channel with an exact Poisson 95% interval and a one-sided exact test of "at most twice
the bound" (also per series, and on the clustered null).

Usage: python bench/drift_real.py [--quick] [--kswin-alpha 1e-5] [--adwin-delta 1e-5] [--seeds 10] [--jobs N] [--data PATH...]
(``--jobs``: series run at once, each in its own process, one per CPU (at most four) by default; the
output is the same whatever it is, in the same order;
``--data``: files or folders of other real data, e.g. the tree ``livelearn history`` writes; kline
dumps, daily or monthly (a month is read as its days), are told by their names, a file of one pair's
one-minute bars under any other name (a download script's, a spreadsheet's) is read as its days too,
every other file as a capture; a file with no tick in its first 10,000 rows is left out with a line saying so, and so is a
day too short for an injected change, from those cases; the cost and the clustered null's template take
the first series, else the largest, of a day of one-minute bars at least, else the shipped day, with a line)
"""

from __future__ import annotations

import argparse
import bisect
import copy
import dataclasses
import datetime as dt
import itertools
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from common import Processes, RealData, real_data, result
from distinct_days import complete_days, distinct_weeks_of

from agents.app import pipeline_config
from agents.settings import Settings
from connectors.recorded import merged, read_file
from schemas.keys import BasisGroups, base_asset
from streams.drift import BASIS_CONFIG
from streams.drift.budget import poisson_interval
from streams.drift.config import DriftConfig
from streams.drift.seasonality import DAY_MS
from streams.pipeline import PartitionPipeline

CHANNELS = ("FEATURE", "VARIANCE", "CONCEPT", "PREDICTION", "BASIS")
PRICE_FIELDS = ("price", "open", "high", "low", "bid_price", "ask_price")
# Drift features that the injected price changes leave as they were (volumes, signs and sizes): an
# alert naming only these after the change is not a detection of it.
NOT_PRICE_DERIVED = frozenset({"volume_z_20", "volume_ratio_20", "taker_buy_share_20", "trade_sign_imbalance_20",
                               "book_imbalance", "signed_flow_10s", "ofi_10"})


def names_price(alert: dict) -> bool:
    """Whether an alert names a price-derived feature: what counts as detecting an injected price change."""
    return bool(set(alert["affected_features"]) - NOT_PRICE_DERIVED)


def real_series(data: RealData) -> list[Path]:
    return [*data.klines, *data.captures]


def ticks_of(path: Path) -> list[dict]:
    return [item.tick for item in read_file(path) if item.tick is not None]


def ticks_in(paths: list[Path], order: str = "time") -> Iterator[dict]:
    """The files' ticks in event-time order, streamed (a day of a capture does not fit in memory);
    captures in the order their lines were received with ``order="received"`` (connectors.recorded.ORDERS)."""
    return (item.tick for item in merged(paths, order=order) if item.tick is not None)


def scale_log_moves(ticks: list[dict], at: int, factor: float) -> list[dict]:
    """From the ``at``-th price tick on, every price's log distance from the price at ``at`` x factor."""
    out, anchor, seen = [], None, 0
    for tick in ticks:
        tick = dict(tick)
        if tick["kind"] != "BOOK_TICKER":
            seen += 1
            if seen == at:
                anchor = tick["price"]
        if anchor is not None:
            for name in PRICE_FIELDS:
                if tick.get(name) is not None:
                    tick[name] = anchor * (tick[name] / anchor) ** factor
        out.append(tick)
    return out


def shift_mean(ticks: list[dict], at: int, drift_per_event: float) -> list[dict]:
    """From the ``at``-th price tick on, a log-price drift of ``drift_per_event`` per price tick."""
    out, seen = [], 0
    for tick in ticks:
        tick = dict(tick)
        if tick["kind"] != "BOOK_TICKER":
            seen += 1
        if seen >= at:
            factor = math.exp(drift_per_event * (seen - at + 1))
            for name in PRICE_FIELDS:
                if tick.get(name) is not None:
                    tick[name] *= factor
        out.append(tick)
    return out


def wandering_depeg(events: int, seed: int, depth: float = 0.05, step: float = 0.002) -> list[float]:
    """A de-peg that is no step, as a pair's price offset (a fraction) per event: down 3% over 60 events,
    then a random walk (``step`` an event, pulled back slowly towards ``-depth``), and back to the peg
    over the last 200 events (a quote asset's peg lost for a day or more moves like this: the issue's
    de-peg moved its pair by up to 14% over three days)."""
    rng, level, out = random.Random(seed), 0.0, []
    for i in range(events):
        if i < 60:
            level = -0.03 * i / 60
        elif i < events - 200:
            level += rng.gauss(0.0, step) + 0.002 * (-depth - level)
        else:
            level *= 1.0 - 1.0 / (events - i)
        out.append(level)
    return out


def basis_group(ticks: list[dict], at: int, shift: float, seed: int = 0, decay_events: float = 720.0,
                moved_pair: int = 2, offsets: list[float] | None = None) -> tuple[list[dict], str]:
    """Three pairs of one base asset from one real series, each with its own 0.5 bp noise, in the order
    USDT, USDC, FDUSD at each event time; pair ``moved_pair`` moves by ``shift`` (a fraction) at the
    ``at``-th price tick, decaying with time constant ``decay_events`` (or by ``offsets[k]`` at the
    ``k``-th price tick from ``at`` on, 0 after them). Returns the ticks (interleaved in event-time order)
    and the symbol that moved."""
    rng = random.Random(seed)
    base = base_asset(ticks[0]["symbol"])
    symbols = (f"{base}USDT", f"{base}USDC", f"{base}FDUSD")
    out, seen = [], 0
    for tick in ticks:
        if tick["kind"] == "BOOK_TICKER":
            continue
        seen += 1
        for i, symbol in enumerate(symbols):
            moved = i == moved_pair and seen >= at
            if not moved:
                offset = 0.0
            elif offsets is None:
                offset = shift * math.exp(-(seen - at) / decay_events)
            else:
                offset = offsets[seen - at] if seen - at < len(offsets) else 0.0
            factor = math.exp(rng.gauss(0, 5e-5)) * (1 + offset)
            copy = dict(tick, symbol=symbol)
            for name in PRICE_FIELDS:
                if copy.get(name) is not None:
                    copy[name] *= factor
            out.append(copy)
    return out, symbols[moved_pair]


def configured(settings: Settings, variance_test: str | None = None):
    """The pipeline's configuration; ``variance_test`` in place of the settings' (LIVELEARN_DRIFT_VARIANCE_TEST)."""
    config = pipeline_config(settings)
    if variance_test is None:
        return config
    return dataclasses.replace(config, drift=dataclasses.replace(config.drift, variance_test=variance_test))


def run(ticks: Iterable[dict], settings: Settings, variance_test: str | None = None) -> tuple[list[dict], int, Counter]:
    """FIRING alerts (with the vector count at which each came), vectors, and vectors per symbol."""
    pipeline = PartitionPipeline(configured(settings, variance_test))
    alerts: list[dict] = []
    vectors, per_symbol = 0, Counter[str]()
    for tick in ticks:
        step = pipeline.on_tick(tick)
        if step.stats.predicted and step.stats.symbol is not None:
            vectors += 1
            per_symbol[step.stats.symbol] += 1
        for output in step.records:
            if output.stage == "alerts" and output.record["status"] == "FIRING":
                alerts.append({**output.record, "at_vector": vectors})
    return alerts, vectors, per_symbol


class Case(NamedTuple):
    """One pipeline run, for a worker process: the ticks, or the files to stream them from."""

    settings: Settings
    ticks: list[dict] | None = None
    paths: tuple[Path, ...] = ()
    variance_test: str | None = None
    order: str = "time"


class Run(NamedTuple):
    alerts: list[dict]
    vectors: int
    per_symbol: Counter
    seconds: float


def run_case(case: Case) -> Run:
    started = time.perf_counter()
    ticks = case.ticks if case.ticks is not None else ticks_in(list(case.paths), case.order)
    return Run(*run(ticks, case.settings, case.variance_test), time.perf_counter() - started)


def pair_groups(data: RealData, settings: Settings) -> list[tuple[str, list[Path]]]:
    """One-minute kline dumps of pairs that share a base asset (``LIVELEARN_BASIS_GROUPS``), every day of
    every pair of a group in one series, as a worker's partition sees them: the only real test of the
    basis channel. A symbol found on two markets (spot and futures both named BTCUSDT, :meth:`RealData.market`)
    cannot be told apart in one stream, so such a group is left out, with a line saying so."""
    groups: dict[str, dict[str, list[Path]]] = {}
    for path in data.klines:
        symbol, interval, _ = path.stem.split("-", 2)
        if interval == "1m":
            key = settings.drift.basis_groups.key(symbol)
            groups.setdefault(key, {}).setdefault(symbol, []).append(path)
    out = []
    for key, by_symbol in sorted(groups.items()):
        if len(by_symbol) < 2:
            continue
        mixed = [symbol for symbol, paths in by_symbol.items() if len({data.market(p) for p in paths}) > 1]
        if mixed:
            print(f"pairs of {key}: left out, {', '.join(mixed)} found on more than one market (spot and futures?)")
            continue
        out.append((f"pairs of {key} ({', '.join(sorted(by_symbol))})", [p for ps in by_symbol.values() for p in ps]))
    return out


def pair_group_alarms(name: str, outcome: Run, settings: Settings) -> list[str]:
    """FIRING alerts per 10k events and channel over a group's pairs together (``outcome``: their run),
    and every BASIS alert with the pair it names and the one it moved against (real de-pegs, if the data
    hold one, show here)."""
    alerts, vectors, per_symbol = outcome.alerts, outcome.vectors, outcome.per_symbol
    by_channel = Counter(a["kind"] for a in alerts)
    per_10k = {c: by_channel.get(c, 0) * 10_000 / max(vectors, 1) for c in CHANNELS}
    config = pipeline_config(settings)
    bound = config.drift.expected_false_alarms_per_10k
    bounds = {c: config.basis.expected_false_alarms_per_10k if c == "BASIS" and config.basis else bound
              for c in CHANNELS}
    # Each symbol's channels hold the bound over that symbol's events: the worst symbol counts.
    by_symbol = Counter((a["symbol"], a["kind"]) for a in alerts)
    worst = {c: max(by_symbol.get((s, c), 0) * 10_000 / n for s, n in per_symbol.items()) for c in CHANNELS}
    print(f"{name}: {vectors} vectors {dict(per_symbol)}  FIRING by channel {dict(by_channel) or '{}'}  "
          f"({outcome.seconds:.0f} s)", flush=True)
    basis = [a for a in alerts if a["kind"] == "BASIS"]
    for alert in basis:
        when = dt.datetime.fromtimestamp(alert["current_end_ms"] / 1000, dt.UTC)
        print(f"    BASIS {alert['severity']:8s} {alert['symbol']} against {alert.get('reference_symbol')} "
              f"at {when:%Y-%m-%d %H:%M} UTC, effect {alert['effect_size']:+.1f}")
    result("drift_real_pair_group", group=name, vectors=vectors, alerts=len(alerts), per_10k_by_channel=per_10k,
           worst_symbol_per_10k_by_channel=worst, bound_per_10k_by_channel=bounds,
           within_twice_the_bound=all(worst[c] <= 2 * bounds[c] for c in CHANNELS), basis_alerts=[[a["symbol"], a.get("reference_symbol"), a["current_end_ms"]] for a in basis])
    return [c for c in CHANNELS if worst[c] > 2 * bounds[c]]


def false_alarms(settings: Settings, data: RealData, kswin_alpha: float, adwin_delta: float,
                 processes: Processes) -> None:
    series = [("files", path.name, [path]) for path in real_series(data)]
    series += [("joined", name, paths) for name, paths in data.consecutive_days()]
    # What a worker reading `live` met: the same captures in the order their lines were received (not pooled).
    series += [("received", f"{path.name} as received", [path]) for path in data.captures]
    groups = pair_groups(data, settings)
    over: dict[str, list[str]] = {}  # series over twice the bound -> its channels over
    runs: dict[str, list[tuple[Counter, int]]] = {"files": [], "joined": [], "received": []}
    outcomes = processes.map(series_alarms, [(tuple(paths), settings, kswin_alpha, adwin_delta,
                                              "received" if kind == "received" else "time")
                                             for kind, _, paths in series])
    group_runs = processes.map(run_case, [Case(settings, paths=tuple(paths)) for _, paths in groups])
    for (kind, name, _), outcome in zip(series, outcomes, strict=True):
        over[name], counts, vectors = false_alarms_of(name, outcome, settings)
        runs[kind].append((counts, vectors))
    if not groups:
        print("no pairs of one base asset among the kline dumps: the basis channel is measured on injected "
              "groups only (below)")
    for (name, _), outcome in zip(groups, group_runs, strict=True):
        over[name] = pair_group_alarms(name, outcome, settings)
    # One line for many files (--data): how many series hold twice the bound, and which do not.
    result("drift_real_false_alarms_summary", series=len(over), within_twice_the_bound=sum(not v for v in over.values()),
           over_twice_the_bound={name: channels for name, channels in over.items() if channels})
    bound = pipeline_config(settings).drift.expected_false_alarms_per_10k
    for kind, label in (("files", "every file on its own"), ("joined", "consecutive days joined")):
        if runs[kind]:
            pooled_false_alarms(label, runs[kind], bound)


def over_twice_the_bound_p(count: int, events: int, bound: float) -> float:
    """One-sided exact Poisson test of "alarms arrive at most twice the bound": the chance of ``count``
    or more alarms in ``events`` at that rate. A day of klines is 1,440 events, and one alarm in it is
    6.9 per 10k, nine times a bound of 0.8: a rate that low cannot be read off one day's count, only
    tested against it, or measured over many days pooled."""
    from scipy.stats import poisson

    return float(poisson.sf(count - 1, 2 * bound * events / 10_000)) if count else 1.0


def alarm_rate(count: int, events: int, bound: float) -> dict:
    """``count`` alarms in ``events``: per 10k, with the exact 95% interval and the test above."""
    low, high = poisson_interval(count)
    return {"alarms": count, "per_10k": count * 10_000 / events,
            "interval_95_per_10k": [low * 10_000 / events, high * 10_000 / events],
            "p_over_twice_the_bound": over_twice_the_bound_p(count, events, bound)}


def pooled_false_alarms(label: str, runs: list[tuple[Counter, int]], bound: float) -> None:
    """Alarms per 10k events and channel over many series pooled, with an exact 95% interval and the
    test above: the rate the issue's rule is about, where one series is too short to show it."""
    events = sum(vectors for _, vectors in runs)
    channels = {}
    for channel in CHANNELS:
        if channel == "BASIS":
            continue  # a single series has one pair: the basis channel is measured on pair groups
        channels[channel] = alarm_rate(sum(counts.get(channel, 0) for counts, _ in runs), events, bound)
    print(f"pooled, {label}: {len(runs)} series, {events} vectors; alarms per 10k (95% interval): " + ", ".join(
        f"{c} {v['alarms']} = {v['per_10k']:.2f} [{v['interval_95_per_10k'][0]:.2f}, {v['interval_95_per_10k'][1]:.2f}]"
        for c, v in channels.items()) + f"; twice the bound {2 * bound:g}", flush=True)
    result("drift_real_false_alarms_pooled", series=label, count=len(runs), vectors=events, bound_per_10k=bound,
           by_channel=channels, within_twice_the_bound=all(v["per_10k"] <= 2 * bound for v in channels.values()),
           rejects_twice_the_bound_at_5pct=[c for c, v in channels.items() if v["p_over_twice_the_bound"] < 0.05])


class SeriesAlarms(NamedTuple):
    default: Run
    levene_variance_alerts: int
    kswin_alarms: int
    adwin_alarms: int
    returns: int


def series_alarms(job: tuple[tuple[Path, ...], Settings, float, float, str]) -> SeriesAlarms:
    """One unmodified series (a worker process's share of :func:`false_alarms`): the pipeline with default
    settings, again with Levene as the variance test, and KSWIN and ADWIN on its returns; captures read
    in ``order`` (connectors.recorded.ORDERS)."""
    from river import drift

    paths, settings, kswin_alpha, adwin_delta, order = job
    default = run_case(Case(settings, paths=paths, order=order))
    levene = run_case(Case(settings, paths=paths, variance_test="levene", order=order))
    kswin, adwin = drift.KSWIN(alpha=kswin_alpha, window_size=500, stat_size=100, seed=1), drift.ADWIN(delta=adwin_delta)
    kswin_alarms = adwin_alarms = returns = 0
    last = None
    for tick in ticks_in(list(paths), order):
        if tick["kind"] == "BOOK_TICKER":
            continue
        if last is not None:
            r = tick["price"] / last - 1
            returns += 1
            kswin.update(r)
            adwin.update(r)
            kswin_alarms += kswin.drift_detected
            adwin_alarms += adwin.drift_detected
        last = tick["price"]
    return SeriesAlarms(default, sum(a["kind"] == "VARIANCE" for a in levene.alerts), kswin_alarms, adwin_alarms, returns)


def false_alarms_of(name: str, outcome: SeriesAlarms, settings: Settings) -> tuple[list[str], Counter, int]:
    """One series: its FIRING alerts per channel beside KSWIN, ADWIN and Levene; returns the channels
    over twice the bound, the alerts per channel and the vectors."""
    alerts, vectors = outcome.default.alerts, outcome.default.vectors
    kswin_alarms, adwin_alarms, returns = outcome.kswin_alarms, outcome.adwin_alarms, outcome.returns
    by_channel = Counter(a["kind"] for a in alerts)
    if not vectors:  # a kline file with no readable row: nothing to count
        print(f"{name:28s} no vectors (no readable tick): left out", flush=True)
        return [], by_channel, 0
    per_10k = {c: by_channel.get(c, 0) * 10_000 / vectors for c in CHANNELS}
    print(f"{name:28s} {vectors:6d} vectors  FIRING by channel {dict(by_channel) or '{}'}  "
          f"KSWIN {kswin_alarms}  ADWIN {adwin_alarms}  ({outcome.default.seconds:.0f} s)", flush=True)
    for alert in alerts:
        print(f"    {alert['kind']:10s} {alert['severity']:8s} {alert['test_name']:14s} "
              f"{','.join(alert['affected_features'][:3]):30s} at vector {alert['at_vector']}")
    bound = pipeline_config(settings).drift.expected_false_alarms_per_10k
    print(f"    (variance test Levene instead: {outcome.levene_variance_alerts} VARIANCE alerts)")
    result("drift_real_false_alarms", file=name, vectors=vectors, alerts=len(alerts),
           per_10k_by_channel=per_10k, bound_per_10k=bound,
           within_twice_the_bound=all(v <= 2 * bound for v in per_10k.values()),
           p_over_twice_the_bound_by_channel={c: over_twice_the_bound_p(by_channel.get(c, 0), vectors, bound)
                                              for c in CHANNELS if by_channel.get(c, 0)},
           kswin_per_10k=kswin_alarms * 10_000 / max(returns, 1), adwin_per_10k=adwin_alarms * 10_000 / max(returns, 1),
           variance_levene_per_10k=outcome.levene_variance_alerts * 10_000 / vectors)
    return [c for c in CHANNELS if per_10k[c] > 2 * bound], by_channel, vectors


def change_point(settings: Settings) -> int:
    """Where changes are injected: 200 events after the drift reference has filled (warm-up, then the
    reference window), so every detector has a reference from before the change."""
    drift = pipeline_config(settings).drift
    return drift.warmup_events + drift.window + 200


# Events a day must have after the injected change to count as a detection or a miss (a whole day of
# one-minute klines has 240 after the change point of the default settings).
AFTER_CHANGE = 200


def changed_day(job: tuple[str, Path, int, Settings, str | None]) -> Run:
    """A kline day with a change injected at ``at`` (``volatility``: log moves x3; ``mean``: +0.5 sd of
    its one-minute returns per event), run through the pipeline (in a worker process)."""
    change, path, at, settings, variance_test = job
    ticks = ticks_of(path)
    if change == "mean":
        prices = [t["price"] for t in ticks]
        sd = statistics.pstdev(math.log(b / a) for a, b in zip(prices, prices[1:], strict=False))
        changed = shift_mean(ticks, at, 0.5 * sd)
    else:
        changed = scale_log_moves(ticks, at, 3.0)
    return run_case(Case(settings, changed, variance_test=variance_test))


def late_change_point(ticks: list[dict], hour: int = 20) -> int | None:
    """The event (counted from 1, as :func:`scale_log_moves` counts) at the latest ``hour``:00 UTC of a
    series that has :data:`AFTER_CHANGE` events after it, or None."""
    day_ms, hour_ms = 86_400_000, 3_600_000
    day = ticks[-1]["event_time_ms"] // day_ms * day_ms
    times = [t["event_time_ms"] for t in ticks]
    while day >= times[0] // day_ms * day_ms:
        at = bisect.bisect_left(times, day + hour * hour_ms)
        if at > 0 and len(ticks) - at >= AFTER_CHANGE:
            return at + 1
        day -= day_ms
    return None


def late_burst(job: tuple[list[Path], Settings]) -> tuple[Run, int | None]:
    """Consecutive kline days of one pair joined, log moves x3 from 20:00 UTC of the last day with
    :data:`AFTER_CHANGE` events after it, cut there (in a worker process): a burst met by a monitor that
    has run for days (learnt an intraday profile, re-based on falls, remembered them), not one a
    day old as in :func:`changed_day`."""
    paths, settings = job
    ticks = [t for t in ticks_in(paths) if t["kind"] != "BOOK_TICKER"]
    at = late_change_point(ticks)
    if at is None:
        return Run([], 0, Counter(), 0.0), None
    return run_case(Case(settings, scale_log_moves(ticks[:at - 1 + AFTER_CHANGE], at, 3.0))), at


# Hours between the bursts of bursts_throughout.
BURST_EVERY_HOURS = 4


def burst_points(ticks: list[dict], every_hours: int = BURST_EVERY_HOURS) -> list[int]:
    """Indices of the first ticks at or after every ``every_hours``-th hour (UTC) from the first midnight
    after a series begins, each with more than :data:`AFTER_CHANGE` ticks after it."""
    day_ms, step_ms = 86_400_000, every_hours * 3_600_000
    times = [t["event_time_ms"] for t in ticks]
    points: list[int] = []
    at_ms = (times[0] // day_ms + 1) * day_ms
    while True:
        at = bisect.bisect_left(times, at_ms)
        if len(ticks) - at <= AFTER_CHANGE:
            return points
        points.append(at)
        at_ms += step_ms


def first_price_alert(pipeline: PartitionPipeline, ticks: list[dict]) -> int | None:
    """Ticks fed before the first VARIANCE or FEATURE alert naming a price-derived feature, or None."""
    for k, tick in enumerate(ticks):
        for output in pipeline.on_tick(tick).records:
            alert = output.record
            if (output.stage == "alerts" and alert["status"] == "FIRING" and alert["kind"] in ("VARIANCE", "FEATURE") and names_price(alert)):
                return k
    return None


def bursts_in(job: tuple[list[Path], Settings]) -> list[int | None]:
    """The first alert after volatility x3 from each of :func:`burst_points` (in a worker process)."""
    paths, settings = job
    ticks = [t for t in ticks_in(paths) if t["kind"] != "BOOK_TICKER"]
    points, delays = set(burst_points(ticks)), []
    pipeline = PartitionPipeline(configured(settings))
    for i, tick in enumerate(ticks):
        if i in points:
            burst = scale_log_moves(ticks[i:i + AFTER_CHANGE], 1, 3.0)
            delays.append(first_price_alert(copy.deepcopy(pipeline), burst))
        pipeline.on_tick(tick)
    return delays


def bursts_throughout(settings: Settings, data: RealData, processes: Processes) -> None:
    """Volatility x3 from every fourth hour of each run of consecutive kline days (:func:`bursts_in`)."""
    runs = data.consecutive_days()
    everything: list[int | None] = []
    for (name, _), delays in zip(runs, processes.map(bursts_in, [(paths, settings) for _, paths in runs]), strict=True):
        found = [d for d in delays if d is not None]
        everything += delays
        print(f"volatility x3 throughout {name}: {len(found)} of {len(delays)} found within {AFTER_CHANGE} events, "
              f"median delay {statistics.median(found) if found else '-'}", flush=True)
    found = [d for d in everything if d is not None]
    result("drift_real_injected_throughout", change=f"volatility x3 every {BURST_EVERY_HOURS} hours after the first day",
           series=len(runs), bursts=len(everything), detected=len(found), within_events=AFTER_CHANGE,
           median_delay_misses_as_200=statistics.median([AFTER_CHANGE if d is None else d for d in everything])
           if everything else None, median_delay_found=statistics.median(found) if found else None)


# Where in each capture (share of its ticks) a burst of capture_bursts begins.
CAPTURE_BURSTS = (0.4, 0.6, 0.8)


def capture_burst_delays(job: tuple[Path, Settings]) -> list[tuple[int, float] | None]:
    """Log moves x3 from each of :data:`CAPTURE_BURSTS` of one capture to its end (in a worker process): the
    ticks and event-time seconds after which an alert names a price-derived feature, or None."""
    path, settings = job
    ticks = ticks_of(path)
    starts, delays = {int(len(ticks) * share) for share in CAPTURE_BURSTS}, []
    pipeline = PartitionPipeline(configured(settings))
    for i, tick in enumerate(ticks):
        if i in starts:
            k = first_price_alert(copy.deepcopy(pipeline), scale_log_moves(ticks[i:], 1, 3.0))
            delays.append(None if k is None else (k, (ticks[i + k]["event_time_ms"] - tick["event_time_ms"]) / 1000))
        pipeline.on_tick(tick)
    return delays


def capture_bursts(settings: Settings, data: RealData, processes: Processes) -> None:
    """Volatility x3 in the captures (:func:`capture_burst_delays`): what DriftConfig.persist_ms costs on ticks."""
    everything: list[tuple[int, float] | None] = []
    for path, delays in zip(data.captures, processes.map(capture_burst_delays, [(p, settings) for p in data.captures]),
                            strict=True):
        everything += delays
        print(f"volatility x3 in {path.name} from {', '.join(f'{s:.0%}' for s in CAPTURE_BURSTS)} of its ticks: "
              f"{', '.join('-' if d is None else f'{d[0]} ticks / {d[1]:.1f} s' for d in delays)}", flush=True)
    found = [d for d in everything if d is not None]
    result("drift_real_capture_bursts", change="volatility x3 to the end of the capture", series=len(data.captures),
           bursts=len(everything), detected=len(found), persist_s=float(settings.drift_persist_s),
           median_delay_ticks=statistics.median(d[0] for d in found) if found else None,
           median_delay_seconds=statistics.median(d[1] for d in found) if found else None)


def basis_day(job: tuple[Path, Settings, int, float, int, list[float] | None, int | None]) -> tuple[Run, str]:
    """A group of three pairs built from a kline day (:func:`basis_group`), run through the pipeline (in
    a worker process); with ``cut``, only the first ``cut`` events (the sell-off: every pair falls 30 bp an
    event from ``at`` on, no pair moves against the others)."""
    path, settings, at, shift, moved_pair, offsets, cut = job
    ticks = ticks_of(path)
    if cut is not None:
        group, mover = basis_group(shift_mean(ticks, at, -30e-4)[:cut], 10**9, 0.0)
    else:
        group, mover = basis_group(ticks, at, shift, moved_pair=moved_pair, offsets=offsets)
    return run_case(Case(settings, group)), mover


def injected(settings: Settings, data: RealData, quick: bool, processes: Processes) -> None:
    at = change_point(settings)
    events = {path: sum(1 for t in ticks_of(path) if t["kind"] != "BOOK_TICKER") for path in data.klines}
    klines = []
    for path in data.klines:  # a partial day (a listing's first, a dump cut short) may end before the change
        if events[path] >= at + AFTER_CHANGE:
            klines.append(path)
        else:
            print(f"{path.name}: {events[path]} events, fewer than the change point {at} and {AFTER_CHANGE} after "
                  "it: left out of the injected changes", flush=True)
    cases = [("volatility x3", "volatility", ("VARIANCE", "FEATURE"), None),
             ("volatility x3 (variance test Levene)", "volatility", ("VARIANCE", "FEATURE"), "levene"),
             ("mean shift +0.5 sd", "mean", ("FEATURE", "VARIANCE"), None)]
    outcomes = processes.map(changed_day, [(change, path, at, settings, variance_test)
                                           for _, change, _, variance_test in cases for path in klines])
    few = klines[:2] if quick else klines
    shifts = (0.005, 0.02, 0.10)
    shifted = processes.map(basis_day, [(path, settings, at, shift, k % 3, None, None)
                                        for shift in shifts for k, path in enumerate(few)])
    # A de-peg that wanders (wandering_depeg) for most of the day: every alert must name the pair that
    # moved; how many it raises is what a subscriber gets from a de-peg of a day. It starts 200 events
    # after the basis channel's reference has filled, so that it has most of a day.
    basis_config = pipeline_config(settings).basis or BASIS_CONFIG
    start = basis_config.warmup_events + basis_config.window + 200
    lengths = [events[path] - start + 1 for path in few]
    wandering = processes.map(basis_day, [(path, settings, start, 0.0, k % 3, wandering_depeg(events, seed=k), None)
                                          for k, (path, events) in enumerate(zip(few, lengths, strict=True))])
    # No basis change while every pair falls together (a sell-off): 30 bp a minute for 100 minutes.
    sell_offs = processes.map(basis_day, [(path, settings, at, 0.0, 0, None, at + 100) for path in few])
    for name, _, kinds, _ in cases:
        delays, detected = [], 0
        for path in klines:
            alerts = next(outcomes).alerts
            after = [a for a in alerts if a["kind"] in kinds and a["at_vector"] >= at]
            hits = [a["at_vector"] - at for a in after if names_price(a)]
            unrelated = len(after) - len(hits)
            early = [a for a in alerts if a["at_vector"] < at]
            detected += bool(hits)
            delays += hits[:1]
            print(f"{name:20s} {path.name:28s} first alert after {hits[0] if hits else '-'} events; "
                  f"{len(early)} alert(s) before the change, {unrelated} after it on features it does not move",
                  flush=True)
        result("drift_real_injected", change=name, at_event=at, series=len(klines), detected=detected,
               median_delay=statistics.median(delays) if delays else None, delays=delays)
    for shift in shifts:
        delays, detected, blamed_wrong = [], 0, 0
        for path in few:
            # The pair that moves is the first, second or third of each event time in turn.
            outcome, mover = next(shifted)
            basis = [a for a in outcome.alerts if a["kind"] == "BASIS"]
            right = [a for a in basis if a["symbol"] == mover and a["at_vector"] >= 3 * (at - 1)]
            blamed_wrong += sum(1 for a in basis if a["symbol"] != mover)
            detected += bool(right)
            if right:
                delays.append((right[0]["at_vector"] - 3 * (at - 1)) // 3)
            print(f"basis {shift:.1%} {path.name:28s} first alert naming {mover} after "
                  f"{delays[-1] if right else '-'} events of its own; {len(basis)} basis alert(s): "
                  f"{[(a['symbol'], a.get('reference_symbol')) for a in basis][:4]}", flush=True)
        result("drift_real_basis", shift=shift, series=len(few), detected=detected,
               median_delay=statistics.median(delays) if delays else None, delays=delays,
               alerts_naming_an_unaffected_pair=blamed_wrong)
    named: list[int] = []
    delays, blamed_wrong = [], 0
    for path, length in zip(few, lengths, strict=True):
        outcome, mover = next(wandering)
        basis = [a for a in outcome.alerts if a["kind"] == "BASIS"]
        right = [a for a in basis if a["symbol"] == mover and a["at_vector"] >= 3 * (start - 1)]
        blamed_wrong += sum(1 for a in basis if a["symbol"] != mover)
        named.append(len(right))
        if right:
            delays.append((right[0]["at_vector"] - 3 * (start - 1)) // 3)
        print(f"basis, a wandering de-peg of {mover} over {length} events {path.name:28s} {len(right)} alert(s) naming "
              f"it, the first after {delays[-1] if right else '-'} events; {len(basis) - len(right)} other(s)", flush=True)
    result("drift_real_basis_wandering", series=len(named), detected=sum(1 for c in named if c),
           alerts_naming_the_mover=named, median_delay=statistics.median(delays) if delays else None,
           alerts_naming_an_unaffected_pair=blamed_wrong)
    falls = []
    for path in few:
        falls.append(sum(1 for a in next(sell_offs)[0].alerts if a["kind"] == "BASIS"))
        print(f"basis, all pairs falling 30 bp a minute {path.name:28s} {falls[-1]} basis alert(s)", flush=True)
    result("drift_real_basis_sell_off", fall_bps_per_event=30, events=100, series=len(falls),
           basis_alerts=falls)


def late_bursts(settings: Settings, data: RealData, processes: Processes) -> None:
    """Volatility x3 late in each run of consecutive kline days (:func:`late_burst`)."""
    runs = data.consecutive_days()
    late = processes.map(late_burst, [(paths, settings) for _, paths in runs])
    delays: list[int] = []
    detected, early_alerts = 0, 0
    for name, _ in runs:
        outcome, at_event = next(late)
        if at_event is None:
            print(f"volatility x3 late   {name}: no 20:00 UTC with {AFTER_CHANGE} events after it", flush=True)
            continue
        after = [a for a in outcome.alerts if a["kind"] in ("VARIANCE", "FEATURE") and a["at_vector"] >= at_event]
        hits = [a["at_vector"] - at_event for a in after if names_price(a)]
        early = sum(1 for a in outcome.alerts if a["kind"] == "VARIANCE" and a["at_vector"] < at_event)
        detected, delays, early_alerts = detected + bool(hits), delays + hits[:1], early_alerts + early
        print(f"volatility x3 late   {name}: from event {at_event}, first alert after {hits[0] if hits else '-'} "
              f"events; {early} VARIANCE alert(s) before it", flush=True)
    result("drift_real_injected_late", change="volatility x3 at 20:00 UTC of the last day", series=len(runs),
           detected=detected, within_events=AFTER_CHANGE, median_delay=statistics.median(delays) if delays else None,
           delays=delays, variance_alerts_before=early_alerts)


def weeks_of(days: list[list[dict]], moves: list[float]) -> list[dict]:
    """Consecutive real days repeated, one day per entry of ``moves`` (each copy a day later, its prices
    rescaled to start at the last close), each day's log moves times its entry."""
    out: list[dict] = []
    for d, size in enumerate(moves):
        day = days[d % len(days)]
        base = next(t["price"] for t in day if t["kind"] != "BOOK_TICKER")
        start = out[-1]["price"] if out else base
        shift_ms = (d - d % len(days)) * 86_400_000
        for tick in day:
            old = tick.get("price")
            tick = dict(tick, event_time_ms=tick["event_time_ms"] + shift_ms)
            for name in PRICE_FIELDS:
                if tick.get(name) is not None:
                    tick[name] = start * (tick[name] / base) ** size
            if tick.get("quote_volume") is not None and old:
                tick["quote_volume"] *= tick["price"] / old  # the same base-asset volume at the new price
            out.append(tick)
    return out


def longest_run(data: RealData, measure: str) -> tuple[str, list[list[dict]]] | None:
    """The longest run of consecutive kline days of one symbol (its name and each day's ticks), or None
    with a line saying that ``measure`` has none to run on. Among runs as long, a pair quoted in the
    preferred reference (USDT first, as the basis channel ranks them): where the data hold a de-peg,
    its pair is not the one a constructed week of quiet weekends is built from."""
    runs = data.consecutive_days()
    if not runs:
        print(f"{measure}: no run of consecutive kline days", flush=True)
        return None
    name, paths = max(runs, key=lambda run: (len(run[1]), -BasisGroups.preference(run[1][0].name.split("-")[0])))
    return name, [ticks_of(path) for path in paths]


def quiet_weekends(settings: Settings, data: RealData, quick: bool, processes: Processes) -> None:
    """Two weeks of the longest run of consecutive kline days, repeated, with quiet weekends (days 5-6
    and 12-13 at 0.5, 0.6 or 0.75 times their moves): FIRING alerts per 10k events and channel, with
    the variance channel's memory of falls (``LIVELEARN_DRIFT_QUIET_SPELL_HOURS``) and, at 0.6,
    without it. A real weekend is in any longer run of days given with ``--data``."""
    longest = longest_run(data, "quiet weekends")
    if longest is None:
        return
    name, days = longest
    cases = [(0.6, None)] if quick else [(0.5, None), (0.6, None), (0.75, None), (0.6, 0.0)]
    weeks = [weeks_of(days, [size if d % 7 in (5, 6) else 1.0 for d in range(14)]) for size, _ in cases]
    outcomes = processes.map(run_case, [
        Case(settings if hours is None else dataclasses.replace(settings, drift_quiet_spell_hours=str(hours)), ticks)
        for (_, hours), ticks in zip(cases, weeks, strict=True)])
    for (size, hours), ticks, (alerts, vectors, _, _) in zip(cases, weeks, outcomes, strict=True):
        rates = {kind: round(sum(a["kind"] == kind for a in alerts) * 1e4 / max(vectors, 1), 2) for kind in CHANNELS}
        first_ms = ticks[0]["event_time_ms"]
        print(f"quiet weekends at {size} of {name}, memory {'default' if hours is None else hours} h: alerts (kind, "
              f"day) {[(a['kind'], (a['created_time_ms'] - first_ms) // 86_400_000) for a in alerts]}", flush=True)
        result("drift_real_quiet_weekends", series=name, days=14, weekend_moves=size,
               quiet_spell_hours=float(hours) if hours is not None else float(settings.drift_quiet_spell_hours),
               vectors=vectors, alarms_per_10k=rates)


def depeg_weeks(settings: Settings, data: RealData) -> None:
    """Two weeks of three pairs (the longest run of consecutive kline days repeated, weekends at 0.6 of
    their moves, as in :func:`quiet_weekends`), the second pair de-pegged for three days from the first
    Saturday, 10:00 UTC (:func:`wandering_depeg`): FIRING alerts per 10k events per pair and channel, and
    the de-pegged pair's alerts after the de-peg ended (the issue's unseen data hold such a de-peg; a
    de-pegged pair's own returns move, so its alerts during the de-peg are its news, not noise)."""
    longest = longest_run(data, "de-peg weeks")
    if longest is None:
        return
    name, days = longest
    ticks = weeks_of(days, [0.6 if d % 7 in (5, 6) else 1.0 for d in range(14)])
    start, length = 5 * 1440 + 600, 3 * 1440
    group, mover = basis_group(ticks, start, 0.0, moved_pair=1, offsets=wandering_depeg(length, seed=7))
    alerts, _, per_symbol = run(group, settings)
    ended = 3 * (start + length)  # vectors (three pairs an event) when the de-peg is over
    after = [a for a in alerts if a["symbol"] == mover and a["at_vector"] >= ended and a["kind"] in ("FEATURE", "VARIANCE")]
    rates = {symbol: {kind: round(sum(a["symbol"] == symbol and a["kind"] == kind for a in alerts) * 1e4 / n, 2)
                      for kind in CHANNELS} for symbol, n in per_symbol.items()}
    print(f"de-peg weeks of {name}: {mover} de-pegged from event {start} for {length}; alerts (symbol, kind, day, "
          f"minute) {[(a['symbol'], a['kind'], *divmod(a['at_vector'] // 3, 1440)) for a in alerts]}", flush=True)
    result("drift_real_depeg_weeks", series=name, days=14, mover=mover, alarms_per_10k=rates,
           mover_feature_or_variance_alerts_after_the_depeg=len(after),
           peers_feature_or_variance_alerts=sum(1 for a in alerts if a["symbol"] != mover
                                                and a["kind"] in ("FEATURE", "VARIANCE")))


def distinct_weeks(settings: Settings, data: RealData, quick: bool, processes: Processes) -> None:
    """Three weeks of distinct days (:func:`distinct_weeks_of`), in three orders (one with ``--quick``):
    FIRING alerts per channel, each listed with its day, and per 10k events pooled over the orders with
    exact 95% intervals. Where every day is real and from one pair (``--data`` with weeks of one pair)
    the unmodified series measure the same without construction."""
    days = complete_days(data.klines)
    if not days:
        print("distinct weeks: no complete kline day", flush=True)
        return
    orders = (1,) if quick else (1, 2, 3)
    bound = pipeline_config(settings).drift.expected_false_alarms_per_10k
    weeks = [distinct_weeks_of(days, 21, seed) for seed in orders]
    outcomes = processes.map(run_case, [Case(settings, ticks) for ticks in weeks])
    counts, vectors = Counter[str](), 0
    rises = []
    for seed, ticks, (alerts, n, _, _) in zip(orders, weeks, outcomes, strict=True):
        counts.update(a["kind"] for a in alerts)
        vectors += n
        first = ticks[0]["event_time_ms"]
        print(f"distinct weeks, order {seed}: {n} vectors, alerts (kind, day, features) "
              f"{[(a['kind'], (a['created_time_ms'] - first) // 86_400_000, a['affected_features'][:2]) for a in alerts]}",
              flush=True)
        rises += [rise for a in alerts if a["kind"] == "VARIANCE"
                  if (rise := volatility_rise(ticks, a["created_time_ms"])) == rise]  # NaN on the first day
    if rises:
        print(f"    each VARIANCE alert's rise of volatility (its last 200 minutes against the same minutes of the three "
              f"days before): {sorted(round(r, 2) for r in rises)}", flush=True)
    rates = {c: alarm_rate(counts.get(c, 0), vectors, bound) for c in CHANNELS if c != "BASIS"}
    print("    pooled per 10k (95% interval): " + ", ".join(
        f"{c} {r['alarms']} = {r['per_10k']:.2f} [{r['interval_95_per_10k'][0]:.2f}, {r['interval_95_per_10k'][1]:.2f}]"
        for c, r in rates.items()), flush=True)
    result("drift_real_distinct_weeks", days=21, orders=len(orders), sources=len(days), vectors=vectors,
           bound_per_10k=bound, by_channel=rates, variance_alerts_volatility_rise=sorted(rises),
           channels_within_twice_the_bound=[c for c, r in rates.items() if r["per_10k"] <= 2 * bound])


def volatility_rise(ticks: list[dict], time_ms: int, minutes: int = 200) -> float:
    """Mean absolute one-minute log return over the ``minutes`` before ``time_ms``, against the same
    minutes of the (up to) three days before: how much volatility had risen where an alert came."""
    times = [t["event_time_ms"] for t in ticks]
    closes = np.log([t["price"] for t in ticks])

    def level(end_ms: int) -> float:
        end = bisect.bisect_right(times, end_ms)
        return float(np.abs(np.diff(closes[max(0, end - minutes - 1):end])).mean()) if end > minutes else math.nan

    before = [level(time_ms - k * 86_400_000) for k in (1, 2, 3)]
    before = [b for b in before if b == b and b > 0]
    return level(time_ms) / statistics.mean(before) if before else math.nan


MAINTENANCE_HOURS = (10, 12)  # UTC hours cut by missing_hours


def without_hours(ticks: list[dict], hours: tuple[int, int] = MAINTENANCE_HOURS) -> list[dict]:
    """The ticks outside ``hours`` (UTC, from the first to before the second) of each day."""
    return [t for t in ticks if not hours[0] <= t["event_time_ms"] // 3_600_000 % 24 < hours[1]]


def missing_hours(settings: Settings, data: RealData, processes: Processes) -> None:
    """FIRING alerts per 10k events and channel where :data:`MAINTENANCE_HOURS` are missing: from every
    kline day on its own, and from the first day of the longest run of consecutive days joined (the
    intraday profile's case: streams.drift.seasonality counts a day with a quarter of its hours missing
    or fewer)."""
    series = [(path.name, without_hours(ticks_of(path))) for path in data.klines]
    longest = longest_run(data, "hours missing in joined days")
    if longest is not None and len(longest[1]) > 1:
        name, days = longest
        series.append((f"{name} joined", [t for day in [without_hours(days[0]), *days[1:]] for t in day]))
    outcomes = processes.map(run_case, [Case(settings, ticks) for _, ticks in series])
    for (name, _), (alerts, vectors, _, _) in zip(series, outcomes, strict=True):
        rates = {kind: round(sum(a["kind"] == kind for a in alerts) * 1e4 / max(vectors, 1), 2) for kind in CHANNELS}
        print(f"{name} without {MAINTENANCE_HOURS[0]:02d}:00-{MAINTENANCE_HOURS[1]:02d}:00 UTC: {vectors} vectors, "
              f"alerts {[(a['kind'], a['affected_features'][:2], a['at_vector']) for a in alerts]}", flush=True)
        result("drift_real_missing_hours", series=name, hours_missing_utc=list(MAINTENANCE_HOURS), vectors=vectors,
               alerts=len(alerts), alarms_per_10k=rates)


def garch_days(template: list[dict], days: int, seed: int, arch: float, garch: float, nu: float = 4.0) -> list[dict]:
    """``days`` copies of a real kline day (its times, volumes and bar shapes) whose closes follow a
    GARCH(1,1) with Student-t innovations (``nu`` degrees of freedom) instead: volatility that clusters
    (persistence ``arch + garch``) and heavy tails, but no change anywhere. Each bar's high, low and quote
    volume keep their ratios to its close; its open is the previous close."""
    rng = np.random.default_rng(seed)
    unit = 1e-6  # the unconditional variance of a one-minute log return (a 0.1% move)
    omega, variance = unit * (1 - arch - garch), unit
    draws = rng.standard_t(nu, size=days * len(template)) / math.sqrt(nu / (nu - 2))
    out, close, k = [], template[0]["price"], 0
    for d in range(days):
        for tick in template:
            r = math.sqrt(variance) * draws[k]
            k += 1
            variance = omega + arch * r * r + garch * variance
            new = close * math.exp(r)
            t = dict(tick, event_time_ms=tick["event_time_ms"] + d * 86_400_000, price=new)
            for name in ("high", "low", "bid_price", "ask_price", "quote_volume"):
                if tick.get(name) is not None:
                    t[name] = new * tick[name] / tick["price"]
            if tick.get("open") is not None:
                t["open"] = close
                t["high"], t["low"] = max(t["high"], close, new), min(t["low"], close, new)
            close = new
            out.append(t)
    return out


def garch_run(job: tuple[list[dict], int, float, float, float, Settings]) -> Run:
    """Ten GARCH days of one seed (:func:`garch_days`) through the pipeline, in a worker process."""
    template, seed, arch, garch, nu, settings = job
    return run_case(Case(settings, garch_days(template, 10, seed, arch, garch, nu)))


def clustered_null(settings: Settings, data: RealData, seeds: int, processes: Processes) -> None:
    """Alarms per 10k events and channel where volatility clusters as on real markets but nothing
    changes: the level the tests hold is what the serial-correlation correction is for, and real days
    are too few to show it (a channel's bound is 0.4 per 10k; a day is 1,440 events)."""
    template, nu = full_day(data, "clustered null"), 4.0
    bound = pipeline_config(settings).drift.expected_false_alarms_per_10k
    persistences = ((0.08, 0.90), (0.05, 0.94))
    outcomes = processes.map(garch_run, [(template, seed, arch, garch, nu, settings)
                                         for arch, garch in persistences for seed in range(seeds)])
    for arch, garch in persistences:
        seconds, counts, vectors = 0.0, Counter[str](), 0
        for _ in range(seeds):
            outcome = next(outcomes)
            counts.update(a["kind"] for a in outcome.alerts)
            vectors += outcome.vectors
            seconds += outcome.seconds
        per_10k = {c: counts.get(c, 0) * 10_000 / vectors for c in CHANNELS}
        rates = {c: alarm_rate(n, vectors, bound) for c, n in counts.items()}
        print(f"GARCH(1,1) t{nu:g}, persistence {arch + garch:.2f}: {vectors} events, FIRING by channel "
              f"{dict(counts) or '{}'} ({seconds:.0f} s of runs)", flush=True)
        print("    95% intervals per 10k: " + ", ".join(f"{c} [{r['interval_95_per_10k'][0]:.2f}, "
                                                    f"{r['interval_95_per_10k'][1]:.2f}]" for c, r in rates.items()),
              flush=True)
        result("drift_clustered_null", persistence=arch + garch, arch=arch, garch=garch, t_dof=nu, events=vectors,
               alerts_by_channel=dict(counts), per_10k_by_channel=per_10k, bound_per_10k=bound,
               interval_95_per_10k_by_channel={c: r["interval_95_per_10k"] for c, r in rates.items()},
               p_over_twice_the_bound_by_channel={c: r["p_over_twice_the_bound"] for c, r in rates.items()},
               within_twice_the_bound=all(v <= 2 * bound for v in per_10k.values()))


# Both detectors test only once a window of 500 is full, and the clustered null's days are copies of a
# template day: on a day of hourly bars (24 events) KSWIN came out as cheap as the channels (1x), and
# the null's ten days were 240 events with nothing tested.
FULL_DAY = 1_400


def full_day(data: RealData, purpose: str) -> list[dict]:
    """The ticks of the first kline series given, else of the largest, else of the shipped first day:
    the first of them with :data:`FULL_DAY` ticks (a line says when the shipped day stands in)."""
    first = data.klines[0]
    ticks = ticks_of(first)
    if len(ticks) < FULL_DAY:
        longest = max(data.klines, key=lambda path: path.stat().st_size)
        if longest != first:
            first, ticks = longest, ticks_of(longest)
    if len(ticks) < FULL_DAY:
        shipped = real_data().klines[0]
        print(f"{purpose}: {first.name} has {len(ticks)} ticks, fewer than a day of one-minute bars: the "
              f"shipped {shipped.name} stands in", flush=True)
        ticks = ticks_of(shipped)
    return ticks


# The cost is timed in the long run: a day of one-minute bars is 1,440 events, and a monitor tests
# nothing until its reference is full (about the first 1,000 of them), so over its first day it costs
# about half of what it does from then on; until its variance CUSUM is warm (48 hours of event time) the
# windowed variance channel runs beside it, then it is dropped (streams.drift.monitor). The day is
# repeated, event times a day apart, and the days after both warm-ups are timed; the rest of the
# warm-up is reported beside them. Per drift feature the data defines: on one-minute klines 17 of the 21 (the four tick-only
# ones are NaN throughout and cost only their bookkeeping).
# History: until 2026-12-07 this benchmark timed the first day alone (on 464d0c9 2.02 us per listed
# feature, 134.7x KSWIN); then days 2-3 per listed feature (3.49-3.83 us, 84.9-89.0x on d495e35). The
# shipped BTCUSDT days run as one continuous series, the second day timed after the first, gave
# 3.88-3.98 us per listed feature (three runs): a repeated day stands for a continuous series. KSWIN,
# full from its 500th update, is timed over the same events.
COST_DAYS = 2  # timed, after the warm-up days (:func:`warm_days`)


def segment_seconds(start: Callable[[], Callable[[Any], object]], items: list, bounds: list[int],
                    repeats: int) -> list[float]:
    """Seconds per item over each segment ``items[bounds[i]:bounds[i + 1]]`` (``bounds`` from 0 to
    ``len(items)``), each the best of ``repeats`` runs; each run calls ``start()`` for a fresh state and
    the step it returns per item, over every item in order."""
    if bounds[0] != 0 or bounds[-1] != len(items) or any(b <= a for a, b in itertools.pairwise(bounds)) or repeats < 1:
        raise ValueError("bounds must rise from 0 to len(items), each segment holding items, and repeats must be >= 1")
    best = [float("inf")] * (len(bounds) - 1)
    for _ in range(repeats):
        step = start()
        for i, (low, high) in enumerate(itertools.pairwise(bounds)):
            started = time.perf_counter()
            for item in items[low:high]:
                step(item)
            best[i] = min(best[i], (time.perf_counter() - started) / (high - low))
    return best


def warm_days(config: DriftConfig) -> int:
    """Days of one-minute bars before a monitor runs as it will from then on: its reference fills on the
    first; the variance CUSUM, where it is the variance test, alarms after ``cusum_warmup_hours`` and the
    windowed variance channel stops then."""
    cusum = config.variance_tests and config.variance_test == "cusum"
    return max(1, math.ceil(config.cusum_warmup_hours / 24)) if cusum else 1


def cost(settings: Settings, data: RealData, repeats: int = 3) -> dict[str, float | int]:
    """(h): per event and drift feature defined on the data, the monitor's feature and variance
    channels on a real day of one-minute bars repeated (event times a day apart; the copies after the
    first without the features' warm-up), timed over :data:`COST_DAYS` days after the :func:`warm_days`,
    beside KSWIN's update on the same events' ``ret_1``; best of ``repeats`` each. The first day and the
    rest of the warm-up are reported beside them."""
    from river import drift

    from streams.drift import DriftMonitor

    pipeline = PartitionPipeline(pipeline_config(settings))
    vectors = [v.record for t in full_day(data, "cost") for v in pipeline.on_tick(t).records
               if v.stage == "features"]
    names = pipeline.config.drift_features
    # The copies after the first leave out the features' own warm-up (their first vectors, with a
    # 20-bar feature still undefined): a window holding it measures each such stream on its own, which
    # a continuous series does only once.
    defined = [name for name in names if any(math.isfinite(v["values"].get(name, math.nan)) for v in vectors)]
    warm = next((i for i, v in enumerate(vectors) if all(math.isfinite(v["values"].get(name, math.nan))
                                                         for name in defined)), 0)  # 0: none has them all
    warm_up = warm_days(pipeline.config.drift)
    days = [(v["values"], v["event_time_ms"] + day * DAY_MS) for day in range(warm_up + COST_DAYS)
            for v in (vectors if day == 0 else vectors[warm:])]
    # Day 1, the rest of the warm-up (none where it is a day), and the days timed.
    bounds = sorted({0, len(vectors), len(vectors) + (warm_up - 1) * (len(vectors) - warm), len(days)})
    counted = len(defined) or len(names)

    def monitor() -> Callable[[tuple[dict, int]], object]:
        checked = DriftMonitor("X", pipeline.config.drift)
        return lambda item: checked.update_features(item[0], item[1], names)

    def kswin() -> Callable[[float], object]:
        return drift.KSWIN(alpha=1e-5, window_size=500, stat_size=100, seed=1).update

    segments = segment_seconds(monitor, days, bounds, repeats)
    kswin_s = segment_seconds(kswin, [values.get("ret_1", 0.0) for values, _ in days], bounds, repeats)[-1]
    per_feature_us, kswin_us = segments[-1] / counted * 1e6, kswin_s * 1e6
    first_us, rest_us = segments[0] / counted * 1e6, segments[1] / counted * 1e6 if len(segments) == 3 else math.nan
    print(f"cost: {per_feature_us:.2f} us per event and drift feature ({counted} of the {len(names)} defined on these "
          f"bars; {COST_DAYS} days after {warm_up} of warm-up, a day repeated; {first_us:.2f} over the first day, "
          f"while the reference fills, {rest_us:.2f} over the rest of the warm-up, the windowed variance channel "
          f"running); KSWIN {kswin_us:.1f} us per update: {kswin_us / per_feature_us:.0f}x", flush=True)
    measures = {"us_per_event_and_feature": per_feature_us, "kswin_us_per_update": kswin_us,
                "ratio": kswin_us / per_feature_us, "first_day_us_per_event_and_feature": first_us,
                "rest_of_warm_up_us_per_event_and_feature": rest_us,
                "us_per_event_and_listed_feature": segments[-1] / len(names) * 1e6,
                "events_per_day": len(vectors), "warm_up_days": warm_up, "events_timed": len(days) - bounds[-2],
                "warm_up_left_out": warm, "features": counted, "features_listed": len(names)}
    result("drift_real_cost", **measures)
    return measures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer series for the basis cases")
    parser.add_argument("--kswin-alpha", type=float, default=1e-5)
    parser.add_argument("--adwin-delta", type=float, default=1e-5)
    parser.add_argument("--only", choices=["false_alarms", "injected", "weekends", "depeg_weeks", "distinct_weeks",
                                           "clustered_null", "missing_hours", "cost", "late_bursts",
                                           "bursts_throughout", "capture_bursts"])
    parser.add_argument("--seeds", type=int, default=10, help="seeds of the clustered null (ten days each)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="series run at once, each in its own process (default: one per CPU, at most 4; 1: all in this one)")
    parser.add_argument("--data", nargs="+", metavar="PATH",
                        help="files or folders of real data instead of the shipped series (kline dumps, daily or monthly, by name, "
                             "any other file a capture)")
    args = parser.parse_args()
    settings = dataclasses.replace(Settings.from_env())
    data = real_data(args.data)
    if not data.klines and args.only not in ("false_alarms", "capture_bursts"):
        parser.error("no kline dump (SYMBOL-1m-YYYY-MM-DD.zip or .csv, or a monthly SYMBOL-1m-YYYY-MM.zip) among --data: the injected changes and "
                     "the cost need one; or use --only false_alarms")
    with Processes(args.jobs) as processes:
        if args.only in (None, "false_alarms"):
            false_alarms(settings, data, args.kswin_alpha, args.adwin_delta, processes)
        if args.only in (None, "injected"):
            injected(settings, data, args.quick, processes)
        if args.only in (None, "late_bursts"):
            late_bursts(settings, data, processes)
        if args.only in (None, "bursts_throughout"):
            bursts_throughout(settings, data, processes)
        if args.only in (None, "capture_bursts"):
            capture_bursts(settings, data, processes)
        if args.only in (None, "weekends"):
            quiet_weekends(settings, data, args.quick, processes)
        if args.only in (None, "depeg_weeks"):
            depeg_weeks(settings, data)
        if args.only in (None, "distinct_weeks"):
            distinct_weeks(settings, data, args.quick, processes)
        if args.only in (None, "clustered_null"):
            clustered_null(settings, data, args.seeds, processes)
        if args.only in (None, "missing_hours"):
            missing_hours(settings, data, processes)
    if args.only in (None, "cost"):
        cost(settings, data)  # timed alone, after every other run has ended


if __name__ == "__main__":
    main()
