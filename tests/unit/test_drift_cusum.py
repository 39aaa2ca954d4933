"""The VARIANCE channel's sequential test (streams.drift.cusum, ``LIVELEARN_DRIFT_VARIANCE_TEST=cusum``):
the detector alone, and as the drift monitor runs it (issue 15). bench/variance_cusum.py and
bench/drift_bursts.py give its figures on long real series."""

from __future__ import annotations

import dataclasses
import math
import pickle
import random
import sys

import pytest

from agents.app import pipeline_config
from agents.settings import Settings
from schemas.codec import AvroCodec
from streams.drift import DriftConfig, DriftMonitor
from streams.drift.cusum import VolatilityCusum

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def profiled(rng: random.Random, minutes: int, start: int = 0, factor: float = 1.0) -> list[tuple[float, int]]:
    """Independent one-minute returns whose scale follows the clock (x2.5 at 20-22 UTC), ``factor`` times it."""
    out = []
    for k in range(minutes):
        t = start + k * MINUTE
        out.append((rng.gauss(0.0, 0.001 * factor * (2.5 if 20 <= t // HOUR % 24 <= 22 else 1.0)), t))
    return out


def test_a_threefold_rise_after_the_warm_up_is_found_within_tens_of_events_and_the_daily_cycle_is_not():
    """Page's sum gains about 0.96 a burst event (threshold 30: about 31 events). The hour profile
    divides the daily cycle out: a profile that took the current hour in as it came measured a burst
    against itself (65-81 events on these series, 8 of 10 found; bench/variance_cusum.py)."""
    for seed in range(3):
        rng = random.Random(seed)
        detector = VolatilityCusum(threshold=30, warmup_hours=48)
        quiet = profiled(rng, 4 * 1440)
        assert [t for r, t in quiet if detector.update(r, t)] == []
        start = 4 * DAY + 21 * HOUR  # in the busy hours: x3 of the usual size for that hour
        burst = profiled(rng, 200, start, factor=3.0)
        alarm, at = next((a, t) for r, t in burst if (a := detector.update(r, t)) is not None)
        assert (at - start) // MINUTE < 60
        assert start <= alarm.start_ms <= at and alarm.scale > 2.0
        assert alarm.statistic > 30 and alarm.p_value == pytest.approx(math.exp(-alarm.statistic))


def test_no_alarm_before_the_warm_up_and_none_for_a_held_value_or_a_repeated_event_time():
    detector = VolatilityCusum(threshold=5, warmup_hours=24)
    rng = random.Random(1)
    early = [detector.update(rng.gauss(0, 0.01 if k > 600 else 0.001), k * MINUTE) for k in range(1439)]
    assert early.count(None) == len(early) and not detector.warm and detector.holding
    assert detector.update(math.nan, 1500 * MINUTE) is None and detector.update(math.inf, 1500 * MINUTE) is None
    assert detector.update(0.001, 1500 * MINUTE) is None and detector.warm
    before = pickle.dumps(detector)
    assert detector.update(0.5, 1500 * MINUTE) is None  # the same event time: one observation
    assert pickle.dumps(detector) == before


@pytest.mark.parametrize("kwargs", [{"threshold": 0}, {"half_life": -1}, {"warmup_hours": -1}, {"hold": -2}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        VolatilityCusum(**kwargs)


def run_monitor(config: DriftConfig, rows: list[tuple[float, int]], seed: int = 0) -> list[dict]:
    rng, monitor, records = random.Random(seed), DriftMonitor("X", config), []
    for r, t in rows:
        records += monitor.update_features({"ret_1": r, "volume_z_20": rng.gauss(0, 1)}, t, ("ret_1", "volume_z_20"))
    return records


def test_the_monitor_opens_one_variance_incident_for_a_burst_and_resolves_it_and_the_record_fits_the_schema():
    """With ``variance_test="cusum"`` the monitor publishes a FIRING VARIANCE alert on ``ret_1`` from
    the detector (``cusum_scale``: statistic S, p exp(-S), effect the size of returns since the rise
    began, current window from then, no action: it has no reference to re-base), de-duplicates its
    further alarms while the burst lasts, and resolves the incident with the same id once the burst is
    over and the hold has passed."""
    config = DriftConfig(variance_test="cusum", cusum_threshold=30)
    rng = random.Random(3)
    start = 3 * DAY + 2 * HOUR
    rows = profiled(rng, 3 * 1440 + 120) + profiled(rng, 600, start, factor=3.0)
    rows += profiled(rng, 600, start + 600 * MINUTE)
    # (The windowed test watches the first two days, without the hour profile of the detector.)
    records = [a for a in run_monitor(config, rows) if a["kind"] == "VARIANCE" and a["created_time_ms"] >= 2 * DAY]
    assert [a["status"] for a in records] in (["FIRING", "RESOLVED"], ["FIRING", "FIRING", "RESOLVED"])
    first = records[0]
    assert first["test_name"] == "cusum_scale" and first["affected_features"] == ["ret_1"]
    assert start <= first["current_start_ms"] <= first["created_time_ms"] < start + 60 * MINUTE
    assert first["reference_start_ms"] == 0 and first["reference_end_ms"] == first["current_start_ms"]
    assert first["effect_size"] > 2.0 and first["p_value"] == pytest.approx(math.exp(-first["statistic"]))
    assert first["severity"] in ("HIGH", "CRITICAL") and first["alert_id"].startswith("X-variance-")
    assert first["recommended_action"] == "none"  # no reference to re-base: the detector's level follows
    assert records[-1]["current_start_ms"] == first["current_start_ms"]
    assert records[-1]["current_end_ms"] == records[-1]["created_time_ms"]
    assert len({a["alert_id"] for a in records}) == 1
    assert records[-1]["created_time_ms"] > start + 600 * MINUTE  # resolved after the burst, not during it
    codec = AvroCodec.for_topic_schema("drift_alert")
    for record in records:
        assert codec.decode(codec.encode(record)) == record


def test_before_its_warm_up_the_windowed_test_watches_and_an_incident_it_opened_passes_to_the_detector():
    """A series shorter than the warm-up (a single day) is watched by the windowed volatility test as
    without the option; once the detector may alarm the windowed channel is dropped, and an incident it
    had open is resolved by the detector's rule, with the same id."""
    rng = random.Random(5)
    rows = profiled(rng, 600) + profiled(rng, 500, 600 * MINUTE, factor=3.0)
    windowed = [a for a in run_monitor(DriftConfig(), rows) if a["kind"] == "VARIANCE"]
    assert windowed and windowed[0]["test_name"] == "log_scale_t"
    config = DriftConfig(variance_test="cusum", cusum_warmup_hours=18)
    rows += profiled(rng, 800, 1100 * MINUTE)
    records = [a for a in run_monitor(config, rows) if a["kind"] == "VARIANCE"]
    assert records[0] == windowed[0]
    assert records[-1]["status"] == "RESOLVED" and records[-1]["alert_id"] == windowed[0]["alert_id"]
    assert records[-1]["created_time_ms"] >= 18 * HOUR


def test_a_stream_without_returns_gets_levene_and_the_windowed_test_alone_has_no_detector():
    assert DriftConfig().variance_test == "cusum"
    rng = random.Random(2)
    monitor = DriftMonitor("X", DriftConfig())
    for k in range(800):
        monitor.update_features({"a": rng.gauss(0, 1 if k < 600 else 4)}, k * MINUTE, ("a",))
    assert monitor.cusum is None and monitor.channels["VARIANCE"].rises_only is False
    windowed = DriftMonitor("X", DriftConfig(variance_test="volatility"))
    for k in range(3 * 1440):
        windowed.update_features({"ret_1": rng.gauss(0, 0.001)}, k * MINUTE, ("ret_1",))
    assert windowed.cusum is None and "VARIANCE" in windowed.channels


def test_a_monitor_restored_from_a_checkpoint_without_the_detector_starts_one(monkeypatch):
    monitor = DriftMonitor("X", DriftConfig(variance_test="cusum"))
    del monitor.__dict__["cusum"]  # as written by a release without it
    restored = pickle.loads(pickle.dumps(monitor))
    restored.update_features({"ret_1": 0.001}, 0, ("ret_1",))
    assert restored.cusum is not None and restored.cusum.detector.first_ms == 0


def test_a_release_without_the_detector_refuses_its_checkpoint_as_a_snapshot_it_may_not_load(monkeypatch):
    """Rolling back to a release without streams.drift.cusum: a monitor written by this one names the
    detector's classes, and the older reader refuses it with ForbiddenGlobal (nothing called), which the
    checkpoint restore counts as unreadable_checkpoint before falling back to an older one or a fresh
    state (agents/checkpoints.py; on Kafka: tests/integration/test_checkpoint_trust_kafka.py)."""
    from streams import snapshots
    from streams.drift import monitor

    written = DriftMonitor("X", DriftConfig(variance_test="cusum"))
    written.update_features({"ret_1": 0.001}, 0, ("ret_1",))
    data = snapshots.dumps(written)
    assert snapshots.loads(data).cusum.detector.first_ms == 0
    monkeypatch.delattr(monitor, "CusumChannel")
    with pytest.raises(snapshots.ForbiddenGlobal, match="streams.drift.monitor.CusumChannel"):
        snapshots.loads(data)
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "streams.drift.cusum", None)  # the module absent
    with pytest.raises(snapshots.ForbiddenGlobal, match="streams.drift.cusum.VolatilityCusum"):
        snapshots.loads(data)


def test_the_setting_selects_the_detector_and_is_validated(monkeypatch):
    monkeypatch.setenv("LIVELEARN_DRIFT_VARIANCE_TEST", "CUSUM")
    monkeypatch.setenv("LIVELEARN_DRIFT_CUSUM_THRESHOLD", "40")
    drift = pipeline_config(Settings.from_env()).drift
    assert (drift.variance_test, drift.cusum_threshold) == ("cusum", 40.0)
    assert dataclasses.replace(drift, variance_test="volatility").cusum_threshold == 40.0
    monkeypatch.setenv("LIVELEARN_DRIFT_VARIANCE_TEST", "page")
    with pytest.raises(ValueError, match="LIVELEARN_DRIFT_VARIANCE_TEST must be one of volatility, cusum, levene"):
        Settings.from_env()
    monkeypatch.setenv("LIVELEARN_DRIFT_VARIANCE_TEST", "cusum")
    monkeypatch.setenv("LIVELEARN_DRIFT_CUSUM_THRESHOLD", "-3")
    with pytest.raises(ValueError, match="LIVELEARN_DRIFT_CUSUM_THRESHOLD: must be > 0"):
        Settings.from_env()
