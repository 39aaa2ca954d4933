"""bench/drift_cost_instructions.py's two loops, run briefly without valgrind, so that the benchmark does
not break unseen (it needs valgrind and minutes, so no test runs it whole)."""

from __future__ import annotations

import pytest

from tests.bench_modules import bench_module


def test_the_instruction_benchmark_runs_the_channel_and_kswin_on_drift_evals_stream():
    bench = bench_module("drift_cost_instructions")
    matrix = bench.stream(700, 3)
    assert matrix.shape == (700, 3) and bench.stream(700, 3).tolist() == matrix.tolist()  # seeded
    bench.run_channel(700)  # the reference fills at 500 events: a few checks run
    bench.run_kswin(700)


def test_the_real_data_cost_is_timed_after_the_monitors_warm_ups_per_feature_the_data_defines():
    """bench/drift_real.py's cost: a monitor tests nothing until its reference is full (about the first
    1,000 events of a day of one-minute bars), so timed over one day it looked twice as cheap as it is
    (the figures before 2026-12-07); its windowed variance channel runs until the variance CUSUM is warm
    (two days). The day is repeated and timed after both, per drift feature the bars define (17 of 21:
    the tick-only ones are NaN throughout)."""
    bench, common = bench_module("drift_real"), bench_module("common")
    from agents.settings import Settings

    seen: list[list[int]] = []

    def start():
        seen.append([])
        return seen[-1].append

    assert len(bench.segment_seconds(start, list(range(30)), [0, 10, 12, 30], 2)) == 3
    assert seen == [list(range(30))] * 2
    with pytest.raises(ValueError, match="bounds"):
        bench.segment_seconds(start, list(range(30)), [0, 10, 10, 30], 1)
    measures = bench.cost(Settings(), common.real_data(), repeats=1)
    assert measures["warm_up_days"] == 2  # the default CUSUM's 48 hours
    assert measures["events_per_day"] >= bench.FULL_DAY and bench.COST_DAYS >= 1
    assert 0 < measures["warm_up_left_out"] < 100  # the features' own: 25 vectors on this day
    assert measures["events_timed"] == bench.COST_DAYS * (measures["events_per_day"] - measures["warm_up_left_out"])
    assert (measures["features"], measures["features_listed"]) == (17, 21)
    assert measures["ratio"] == measures["kswin_us_per_update"] / measures["us_per_event_and_feature"]
