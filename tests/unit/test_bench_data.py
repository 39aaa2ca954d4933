"""The benchmarks' real data loader (bench/common.py): more real data than ships here is given with
``--data``, as data.binance.vision publishes it, daily or monthly."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from connectors.recorded import read_file
from tests.bench_modules import bench_module

ROOT = Path(__file__).resolve().parents[2]
KLINES = ROOT / "data" / "binance" / "klines"


def bench_common():
    return bench_module("common")


def ticks(path: Path) -> list[dict]:
    return [item.tick for item in read_file(path) if item.tick is not None]


def day_text(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return archive.read(archive.namelist()[0]).decode()


def test_a_monthly_kline_dump_is_read_as_its_days(tmp_path, capsys):
    """A month of a spot pair (no header) as one zip, and a USD-M month (with a header) as one CSV: each
    day's ticks are those of the daily dump of that day, named as the daily dumps are, spot and futures
    kept in folders of their own (the basis groups tell markets apart by folder)."""
    common = bench_common()
    spot, um = tmp_path / "spot", tmp_path / "um"
    spot.mkdir()
    um.mkdir()
    first, second = KLINES / "spot" / "BTCUSDT-1m-2020-01-01.zip", KLINES / "spot" / "BTCUSDT-1m-2020-01-02.zip"
    with zipfile.ZipFile(spot / "BTCUSDT-1m-2020-01.zip", "w") as archive:
        archive.writestr("BTCUSDT-1m-2020-01.csv", day_text(first) + day_text(second))
    futures = KLINES / "um" / "BTCUSDT-1m-2022-09-05.zip"
    (um / "BTCUSDT-1m-2022-09.csv").write_text(day_text(futures))
    (tmp_path / "capture.gz").write_bytes((ROOT / "data" / "binance" / "ws" / "spot_ethusdt_20240808.gz").read_bytes())

    data = common.real_data([str(tmp_path)])

    assert [p.name for p in data.captures] == ["capture.gz"]
    assert [p.name for p in data.klines] == ["BTCUSDT-1m-2020-01-01.csv", "BTCUSDT-1m-2020-01-02.csv",
                                             "BTCUSDT-1m-2022-09-05.csv"]
    assert all(common.KLINE_DUMP.fullmatch(p.name) for p in data.klines)
    assert data.klines[0].parent == data.klines[1].parent != data.klines[2].parent
    for day, original in zip(data.klines, (first, second, futures), strict=True):
        assert ticks(day) == ticks(original)
    assert "BTCUSDT-1m-2020-01.zip: a monthly kline dump, read as its 2 days" in capsys.readouterr().out


def test_files_with_no_tick_beside_the_data_are_left_out_with_a_line(tmp_path, capsys):
    """A data folder holds more than data: a log, a script, a JSON note, an empty day. Each was read as a
    series of no vectors, and ``drift_real.py --data`` died dividing by zero after the per-file table
    (found on a constructed tree). Now each is left out, saying so, and the data files are kept."""
    common = bench_common()
    (tmp_path / "spot").mkdir()
    day = KLINES / "spot" / "BTCUSDT-1m-2020-01-01.zip"
    (tmp_path / "spot" / day.name).write_bytes(day.read_bytes())
    (tmp_path / "spot" / "ETHUSDT-1m-2020-01-01.csv").write_text("")
    (tmp_path / "capture.gz").write_bytes((ROOT / "data" / "binance" / "ws" / "spot_ethusdt_20240808.gz").read_bytes())
    (tmp_path / "run.log").write_text("evaluate BTCUSDT-1m-2020-01-01.zip: 1,440/1,440 ticks\n")
    (tmp_path / "make.py").write_text("import zipfile\nprint(1)\n")
    (tmp_path / "meta.json").write_text('{"symbols": ["BTCUSDT"]}\n')

    data = common.real_data([str(tmp_path)])

    assert [p.name for p in data.klines] == [day.name] and [p.name for p in data.captures] == ["capture.gz"]
    out = capsys.readouterr().out
    for name in ("ETHUSDT-1m-2020-01-01.csv", "run.log", "make.py", "meta.json"):
        assert f"{name}: no tick in its first 10,000 rows (not market data?): left out" in out


@pytest.mark.parametrize("market", ["spot", None])
def test_a_pairs_monthly_and_daily_dumps_are_one_series(tmp_path, capsys, monkeypatch, market):
    """data.binance.vision's layout: a pair's months under ``monthly/``, the days of the month not yet
    published as a month under ``daily/``, with the market's folder above them or without it. A day
    given both ways is read once, the pair's days join into one series across the two folders, and it
    forms a pair group with another pair of its base asset (before, a pair in two folders was taken
    for a spot and a futures pair and its group left out)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import drift_real
    from common import real_data

    from agents.settings import Settings

    spot = tmp_path / "data" / market if market else tmp_path / "data"
    monthly, daily = spot / "monthly" / "klines" / "BTCUSDT" / "1m", spot / "daily" / "klines" / "BTCUSDT" / "1m"
    usdc = spot / "daily" / "klines" / "BTCUSDC" / "1m"
    for folder in (monthly, daily, usdc):
        folder.mkdir(parents=True)
    first, second = KLINES / "spot" / "BTCUSDT-1m-2020-01-01.zip", KLINES / "spot" / "BTCUSDT-1m-2020-01-02.zip"
    with zipfile.ZipFile(monthly / "BTCUSDT-1m-2020-01.zip", "w") as archive:
        archive.writestr("BTCUSDT-1m-2020-01.csv", day_text(first) + day_text(second))
    (daily / second.name).write_bytes(second.read_bytes())
    (usdc / "BTCUSDC-1m-2020-01-01.csv").write_text(day_text(first))

    data = real_data([str(tmp_path)])

    assert sorted(p.name for p in data.klines) == ["BTCUSDC-1m-2020-01-01.csv", "BTCUSDT-1m-2020-01-01.csv",
                                                   "BTCUSDT-1m-2020-01-02.zip"]
    markets = {symbol: {data.market(p) for p in data.klines if p.name.startswith(symbol)}
               for symbol in ("BTCUSDT", "BTCUSDC")}
    assert all(len(found) == 1 for found in markets.values())
    assert market is None or markets["BTCUSDT"] == {market}
    assert "read as its 2 days (1 given as daily dumps too: those are read)" in capsys.readouterr().out
    runs = data.consecutive_days()
    assert [(name, sorted(p.name for p in paths)) for name, paths in runs] == [
        ("BTCUSDT 2020-01-01..2020-01-02", ["BTCUSDT-1m-2020-01-01.csv", "BTCUSDT-1m-2020-01-02.zip"])]
    groups = drift_real.pair_groups(data, Settings())
    assert [len(paths) for _, paths in groups] == [3]


def test_benchmark_runs_give_the_same_figures_in_worker_processes(monkeypatch):
    """bench/drift_real.py runs its series in worker processes (``--jobs``): the alerts and counts of
    two real kline days with volatility x3 injected, run in two spawned processes, are those of the
    same runs in this one, in the order given."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import drift_real
    from common import Processes

    from agents.settings import Settings

    settings = Settings()
    at = drift_real.change_point(settings)
    jobs = [("volatility", KLINES / "spot" / name, at, settings, "volatility")
            for name in ("BTCUSDT-1m-2020-01-01.zip", "ETHUSDT-1m-2022-08-14.zip")]
    here = [run[:3] for run in map(drift_real.changed_day, jobs)]
    with Processes(2) as processes:
        there = [run[:3] for run in processes.map(drift_real.changed_day, jobs)]
    assert there == here
    assert all(run[1] > 1000 for run in here)
    assert any(run[0] for run in here)  # the burst is reported: the comparison has alerts to compare


def test_minute_bars_not_named_as_a_dump_are_read_as_their_days(tmp_path, capsys):
    """Download scripts name a pair's minutes otherwise (``BTCUSDT_1m_20200101_20200102.csv``, times as
    ISO strings, newest first or with a spreadsheet's columns): such a file was taken for a capture (one
    series, no kline day), so the injected changes ended on "no kline dump among --data" and its
    pairs' basis was never measured. Now it is read as its days, each holding the ticks the file has
    for that day; a capture stays a capture."""
    from datetime import UTC, datetime

    common = bench_common()
    days = [KLINES / "spot" / "BTCUSDT-1m-2020-01-01.zip", KLINES / "spot" / "BTCUSDT-1m-2020-01-02.zip"]
    rows = [line.split(",") for day in days for line in day_text(day).splitlines()]
    lines = ["open_time,open,high,low,close,volume"] + [
        f"{datetime.fromtimestamp(int(r[0]) / 1000, UTC):%Y-%m-%d %H:%M:%S+00:00},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]}"
        for r in reversed(rows)]
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "BTCUSDT_1m_20200101_20200102.csv").write_text("\n".join(lines) + "\n")
    (folder / "capture.gz").write_bytes((ROOT / "data" / "binance" / "ws" / "spot_ethusdt_20240808.gz").read_bytes())

    data = common.real_data([str(folder)])

    assert [p.name for p in data.captures] == ["capture.gz"]
    assert [p.name for p in data.klines] == ["BTCUSDT-1m-2020-01-01.csv", "BTCUSDT-1m-2020-01-02.csv"]
    whole = ticks(folder / "BTCUSDT_1m_20200101_20200102.csv")
    assert len(whole) == 2880 and ticks(data.klines[0]) + ticks(data.klines[1]) == whole
    assert {t["symbol"] for t in whole} == {"BTCUSDT"} and whole[0]["event_time_ms"] == int(rows[0][0])
    assert [name for name, _ in data.consecutive_days()] == ["BTCUSDT 2020-01-01..2020-01-02"]
    assert "one-minute bars of BTCUSDT, read as their 2 days" in capsys.readouterr().out


def test_a_capture_is_told_from_its_first_rows_and_not_read_whole(tmp_path, monkeypatch):
    """Every file of ``--data`` not named as a dump is asked whether it is one pair's minute bars. Before,
    that question read the whole file into memory (and a capture of gigabytes with it); now the first
    rows answer it for a capture, and only a file of minute bars is read whole."""
    from connectors import recorded

    common = bench_common()
    capture = tmp_path / "capture.gz"
    capture.write_bytes((ROOT / "data" / "binance" / "ws" / "spot_btcusdt_20240808.gz").read_bytes())
    read_whole: list[str] = []
    real_read_file = recorded.read_file
    monkeypatch.setattr(recorded, "read_file", lambda path, *a, **k: read_whole.append(Path(path).name)
                        or real_read_file(path, *a, **k))

    assert common.minute_bar_days(capture, tmp_path / "days") is None
    assert read_whole == []
    kline_day = KLINES / "spot" / "BTCUSDT-1m-2020-01-01.zip"
    bars = tmp_path / "BTCUSDT_bars.csv"
    bars.write_text(day_text(kline_day))
    (tmp_path / "days").mkdir()
    written = common.minute_bar_days(bars, tmp_path / "days")
    assert read_whole == ["BTCUSDT_bars.csv"]
    assert [p.name for p in written] == ["BTCUSDT-1m-2020-01-01.csv"] and ticks(written[0]) == ticks(kline_day)


def test_distinct_weeks_are_built_from_bars_without_taker_volume_or_trade_count(tmp_path):
    """Minute bars of a plain OHLCV export have no taker volume and no trade count (a thin pair's
    median minute has no volume either): the distinct weeks built from them ended on a TypeError.
    They keep none (no order flow made up) and are written as OHLCV days that read back the same."""
    module = bench_module("distinct_days")
    day = [dict(tick, taker_buy_volume=None, trade_count=None, quote_volume=None,
                quantity=0.0 if i % 3 else tick["quantity"])
           for i, tick in enumerate(ticks(KLINES / "spot" / "BTCUSDT-1m-2020-01-01.zip"))]
    week = module.distinct_weeks_of([day], 3, seed=1)
    assert len(week) == 3 * 1440 and all(t["taker_buy_volume"] is None and t["trade_count"] is None for t in week)
    paths = module.write_kline_days(week, tmp_path)
    assert [p.suffix for p in paths] == [".csv"] * 3
    back = [t for p in paths for t in ticks(p)]
    assert [(t["event_time_ms"], t["price"], t["quantity"]) for t in back] == [
        (t["event_time_ms"], t["price"], t["quantity"]) for t in week]


def test_a_late_burst_is_injected_at_twenty_hours_of_the_last_day_with_room_after_it(monkeypatch):
    """bench/drift_real.py --only late_bursts: volatility x3 at 20:00 UTC of the last day of a run of
    consecutive days that has AFTER_CHANGE events after it (a day cut before 20:00 gives the day
    before), met by a monitor that has run since the first day; the two shipped BTCUSDT days joined
    report it."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import drift_real

    from agents.settings import Settings

    days = [KLINES / "spot" / f"BTCUSDT-1m-2020-01-0{d}.zip" for d in (1, 2)]
    joined = ticks(days[0]) + ticks(days[1])
    at = drift_real.late_change_point(joined)
    assert joined[at - 1]["event_time_ms"] == 1577995259999  # the bar of 2020-01-02 20:00 UTC (its close time)
    cut = joined[: 1440 + 20 * 60 + drift_real.AFTER_CHANGE - 1]  # one event short of room after 20:00
    assert cut[drift_real.late_change_point(cut) - 1]["event_time_ms"] == 1577908859999  # 2020-01-01 20:00
    assert drift_real.late_change_point(joined[:600]) is None
    outcome, at_event = drift_real.late_burst((days, Settings()))
    assert at_event == at and outcome.vectors == at - 1 + drift_real.AFTER_CHANGE
    assert [a for a in outcome.alerts if a["at_vector"] < at] == []
    hits = [a for a in outcome.alerts if a["kind"] in ("VARIANCE", "FEATURE") and a["at_vector"] >= at]
    assert hits and drift_real.names_price(hits[0])


def test_bursts_throughout_start_every_fourth_hour_after_the_first_midnight_each_on_a_copy_of_the_pipeline(monkeypatch):
    """bench/drift_real.py --only bursts_throughout: volatility x3 from 00:00, 04:00, ... 20:00 UTC of the
    second shipped BTCUSDT day (the last with room after it), each met by a copy of a pipeline that has run
    the unmodified days until then; the copies leave the pipeline as it was, so the 20:00 burst is found
    after as many events as the late burst is (59; 99 before the variance channel pooled its serial
    correlation late)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import drift_real

    from agents.settings import Settings

    days = [KLINES / "spot" / f"BTCUSDT-1m-2020-01-0{d}.zip" for d in (1, 2)]
    joined = ticks(days[0]) + ticks(days[1])
    assert drift_real.burst_points(joined) == [1440 + 240 * k for k in range(6)]
    assert drift_real.burst_points(joined[:1440 + 200]) == []
    delays = drift_real.bursts_in((days, Settings()))
    assert delays == [None, None, 59, 139, 79, 59], delays


def test_drift_bursts_meets_the_bursts_the_whole_pipeline_meets_with_the_monitor_alone(tmp_path, monkeypatch):
    """bench/drift_bursts.py runs the feature engine and the drift monitor without the models: the
    FEATURE and VARIANCE alerts do not depend on them, so from the same events (the two shipped BTCUSDT
    days as one file, a burst every 240 events after the first day) it finds the bursts after as many
    events as bench/drift_real.py's bursts throughout, which copies the whole pipeline (above), and says
    which state the variance channel was in at each. Its copies leave the run as it was: the alerts on
    the unmodified days are those of a run with no burst."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import drift_bursts

    from agents.settings import Settings

    joined = tmp_path / "BTCUSDT-1m-2020-01.csv"  # one file, as a monthly dump is one series
    joined.write_text("".join(day_text(KLINES / "spot" / f"BTCUSDT-1m-2020-01-0{d}.zip") for d in (1, 2)))
    name, alerts, bursts, events = drift_bursts.series((joined, Settings(), 240, 200, 23.9))
    assert (name, events) == (joined.name, 2880)
    assert [delay for delay, _ in bursts] == [None, None, 59, 139, 79, 59]
    assert {state for _, state in bursts} <= {"reference filling", "a fall remembered", "neither"}
    assert alerts == drift_bursts.series((joined, Settings(), 0, 200, 23.9))[1]
    _, _, late, _ = drift_bursts.series((joined, Settings(), 240, 200, 35.0))
    assert [delay for delay, _ in late] == [139, 79, 59]  # none before the warm-up has passed


def test_drift_bursts_days_runs_each_day_of_a_file_as_its_own_daily_dump_would_run(tmp_path, monkeypatch):
    """``bench/drift_bursts.py --days`` cuts a long file into its UTC days and runs each from a fresh
    engine and monitor: each day's FIRING alerts are those of that day's own shipped file run alone
    (small drift windows and a lax level, so that the days raise some), and a burst spliced in where
    bench/drift_real.py splices it into the shipped days is found after the same number of events."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import drift_bursts

    from agents.settings import Settings

    settings = Settings.from_env({"LIVELEARN_DRIFT_WINDOW": "200", "LIVELEARN_DRIFT_WARMUP": "100",
                                  "LIVELEARN_DRIFT_ALPHA": "0.05"})
    files = [KLINES / "spot" / f"BTCUSDT-1m-2020-01-0{d}.zip" for d in (1, 2)]
    joined = tmp_path / "BTCUSDT-1m-2020-01.csv"
    joined.write_text("".join(day_text(path) for path in files))
    name, per_day, lengths, _ = drift_bursts.days((joined, settings, 0, 200))
    assert (name, lengths) == (joined.name, [1440, 1440])
    alone = [drift_bursts.series((path, settings, 0, 200, 0.0))[1] for path in files]
    assert sum(sum(counts.values()) for counts in alone) > 0
    assert {kind: [day[kind] for day in alone] for day in alone for kind in day} == per_day
    # The bursts: from the event bench/drift_real.py injects volatility x3 into a shipped day at, found
    # after as many events as its whole pipeline finds them.
    import drift_real

    at = drift_real.change_point(Settings())
    _, _, _, delays = drift_bursts.days((joined, Settings(), at, 200))
    whole = []
    for path in files:
        alerts = drift_real.changed_day(("volatility", path, at, Settings(), None)).alerts
        whole.append(min(a["at_vector"] - at for a in alerts if a["at_vector"] >= at and drift_real.names_price(a)
                         and a["kind"] in ("VARIANCE", "FEATURE")))
    assert delays == whole == [80, 140]


def test_a_result_line_is_strict_json_where_a_figure_could_not_be_computed(capsys):
    """An interval on too few outcomes is NaN; the RESULT line says null, which every JSON reader takes
    (Python's json writes NaN, which is not JSON)."""
    import json

    bench_common().result("skill", interval=(float("nan"), float("inf")), n=3, nested={"p": float("nan")})
    line = capsys.readouterr().out
    assert line.startswith("RESULT ")
    assert json.loads(line[len("RESULT "):], parse_constant=lambda c: pytest.fail(f"not JSON: {c}")) == {
        "bench": "skill", "interval": [None, None], "n": 3, "nested": {"p": None}}


def test_volatility_memory_finds_an_aged_reference_too_narrow_only_where_volatility_wanders(monkeypatch):
    """bench/volatility_memory.py: the variance of (window mean - reference mean) of log absolute returns
    against what the variance test assumes. With volatility constant it is about 1 whatever the
    reference's age; with log-volatility wandering slowly (an AR(1) with a time constant of 2,000 bars
    and a spread of 0.3, small beside the noise of one bar's log absolute return, as on real months) it
    grows with the age, as measured on real months (1.3-2.9 for a reference a day old). Ten days of
    one-minute bars."""
    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import volatility_memory as vm

    rng = np.random.default_rng(4)
    n = 14_400
    times = 1_577_836_800_000 + 60_000 * np.arange(n + 1)
    phi = 1.0 - 1.0 / 2000
    wander = np.zeros(n + 1)
    for i in range(1, n + 1):
        wander[i] = phi * wander[i - 1] + rng.normal(0.0, 0.3 * np.sqrt(1.0 - phi * phi))
    ratios = {}
    for name, log_vol in (("constant", np.zeros(n + 1)), ("wandering", wander)):
        closes = 100.0 * np.exp(np.cumsum(1e-3 * np.exp(log_vol) * rng.standard_normal(n + 1)))
        scales = vm.log_scales(times, closes)
        ratios[name], pairs = vm.aged_reference_ratios(scales, 500, 62)
        assert sorted(pairs) == [200, 1440, 2880] and min(pairs.values()) > 500
    assert all(0.5 < r < 1.5 for r in ratios["constant"].values()), ratios
    assert ratios["wandering"][2880] > 1.5 * ratios["wandering"][200], ratios
    assert ratios["wandering"][2880] > 1.5 * ratios["constant"][2880], ratios


def test_the_cost_and_the_clustered_null_take_a_full_day_where_the_data_has_only_short_series(tmp_path, capsys,
                                                                                               monkeypatch):
    """bench/drift_real.py --data on hourly bars: the cost measured on 24 events put KSWIN at 1x the
    channels (neither had a full window to test) and the clustered null's days were 24 events. The
    first series, else the largest, else the shipped day, stands in, with a line saying so."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import drift_real

    day = ticks(KLINES / "spot" / "BTCUSDT-1m-2020-01-01.zip")
    hourly = tmp_path / "BTCUSDT-1h-2020-01-01.csv"
    hourly.write_text("".join(line + "\n" for line in day_text(KLINES / "spot" / "BTCUSDT-1m-2020-01-01.zip")
                              .splitlines()[59::60]))
    data = drift_real.RealData((hourly,), ())
    assert drift_real.full_day(data, "cost") == day
    assert "cost: BTCUSDT-1h-2020-01-01.csv has 24 ticks, fewer than a day of one-minute bars" in capsys.readouterr().out

    full = tmp_path / "ETHUSDT-1m-2022-08-14.zip"
    full.write_bytes((KLINES / "spot" / full.name).read_bytes())
    assert drift_real.full_day(drift_real.RealData((hourly, full), ()), "cost") == ticks(full)
    assert capsys.readouterr().out == ""


def test_the_cusum_bench_measures_the_products_detector_on_profiled_returns(monkeypatch):
    """bench/variance_cusum.py runs streams.drift.cusum's detector: on four days of independent
    one-minute returns whose scale follows an hour-of-day profile (x2.5 at 20-22 UTC) it counts no
    alarm, and ten x3 bursts after the two-day warm-up, each found within tens of events."""
    import random

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import variance_cusum

    rng = random.Random(7)
    times = [minute * 60_000 for minute in range(4 * 1440)]
    r = [rng.gauss(0.0, 0.001 * (2.5 if 20 <= t // 3_600_000 % 24 <= 22 else 1.0)) for t in times]
    measured = variance_cusum.measure([("profiled", r, times)], 30.0, 720.0, every=300, after=200, warmup_hours=48)
    assert measured["alarms"] == 0 and measured["bursts"] == 10
    assert measured["found"] == 10 and measured["median_delay_found"] < 40
