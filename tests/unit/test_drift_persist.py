"""A drift incident (BASIS aside) opens only for a change seen over DriftConfig.persist_ms of event time."""

from __future__ import annotations

import pickle
import random

from streams.drift import BASIS_CONFIG, DriftConfig, DriftMonitor


def _firing(config: DriftConfig, step_ms: int, shifted: range) -> list[dict]:
    rng = random.Random(11)
    monitor = DriftMonitor("X", config)
    alerts = []
    for i in range(6000):
        values = {"a": rng.gauss(2.0 if i in shifted else 0.0, 1.0), "b": rng.gauss(0.0, 1.0)}
        alerts += [a for a in monitor.update_features(values, 1_700_000_000_000 + i * step_ms, ("a", "b"))
                   if a["status"] == "FIRING"]
    return alerts


def test_a_burst_of_seconds_in_a_tick_stream_opens_no_incident_and_a_lasting_change_does_a_minute_later():
    """Ten events a second: a shift lasting 10 s (events 1,500-1,599) is rejected at once but has left the
    current window (100 events, 10 s) a minute later, so it opens nothing; without persistence it opened
    an incident. A shift from event 3,000 on is reported once it has been seen for 60 s, with the
    figures of the rejection that began it."""
    base = DriftConfig(window=200, check_every=20, variance_tests=False)
    assert base.persist_ms == 60_000
    immediate = _firing(DriftConfig(window=200, check_every=20, variance_tests=False, persist_ms=0), 100,
                        range(1500, 1600))
    assert [a["affected_features"] for a in immediate] == [["a"]]
    assert _firing(base, 100, range(1500, 1600)) == []
    lasting = _firing(base, 100, range(3000, 6000))
    assert len(lasting) == 1 and lasting[0]["affected_features"] == ["a"]
    start_ms = 1_700_000_000_000 + 3000 * 100
    fired_ms = lasting[0]["created_time_ms"]
    assert start_ms + 60_000 <= fired_ms <= start_ms + 60_000 + 20_000
    # The figures are the first rejection's: its current window ended a minute before the alert.
    assert lasting[0]["current_end_ms"] <= fired_ms - 60_000 and lasting[0]["adjusted_p_value"] < base.alpha


def test_one_minute_bars_raise_the_same_alerts_with_and_without_persistence():
    """A current window of 100 one-minute events spans 99 minutes: nothing waits."""
    lasting = range(3000, 6000)
    with_persistence = _firing(DriftConfig(window=200, check_every=20, variance_tests=False), 60_000, lasting)
    without = _firing(DriftConfig(window=200, check_every=20, variance_tests=False, persist_ms=0), 60_000, lasting)
    assert with_persistence and with_persistence == without


def test_a_configuration_from_before_persistence_restores_firing_at_the_first_rejection():
    config = DriftConfig()
    state = dict(pickle.loads(pickle.dumps(config)).__dict__)
    del state["persist_ms"]
    old = DriftConfig.__new__(DriftConfig)
    old.__setstate__(state)
    assert old.persist_ms == 0 and old.window == config.window


def test_the_basis_channel_reports_a_depeg_at_once():
    assert BASIS_CONFIG.persist_ms == 0  # the monitor reads each channel's own configuration


def test_a_pending_rejection_is_confirmed_against_the_reference_that_rejected_it():
    """A reference that ages (reference_max_age_hours) while a rejection waits is not taken again until
    the confirmation: taken from the latest events, it would hold the change and hide it. Here the
    reference ages every 36 s of event time, within the minute the rejection waits."""
    aging = DriftConfig(window=200, check_every=20, variance_tests=False, reference_max_age_hours=0.01)
    lasting = _firing(aging, 100, range(3000, 6000))
    assert len(lasting) == 1 and lasting[0]["affected_features"] == ["a"]
    start_ms = 1_700_000_000_000 + 3000 * 100
    assert start_ms + 60_000 <= lasting[0]["created_time_ms"] <= start_ms + 60_000 + 20_000


def test_a_confirmation_counts_only_the_streams_the_first_rejection_named():
    """Feature a jumps for 10 s (rejected, then gone); b shifts for good 53 s after a's jump began, so at
    a's confirmation b differs and a does not. b's change is not reported as a's: a's rejection lapses,
    and b opens its own incident a minute after its own rejection."""
    rng = random.Random(11)
    monitor = DriftMonitor("X", DriftConfig(window=200, check_every=20, variance_tests=False))
    alerts = []
    for i in range(4000):
        values = {"a": rng.gauss(2.0 if 1500 <= i < 1600 else 0.0, 1.0), "b": rng.gauss(2.0 if i >= 2030 else 0.0, 1.0)}
        alerts += [a for a in monitor.update_features(values, 1_700_000_000_000 + i * 100, ("a", "b"))
                   if a["status"] == "FIRING"]
    assert [a["affected_features"] for a in alerts] == [["b"]]
    assert alerts[0]["created_time_ms"] >= 1_700_000_000_000 + 2030 * 100 + 60_000


def test_any_variance_stream_confirms_a_rise_of_volatility():
    """The variance channel's streams all measure the size of returns, each at its own scale, so a rise first
    rejected on one of them is confirmed by any: here ret_1 rises x3 for 10 s and ret_5 x3 for good from
    53 s later. The alert carries the first rejection's figures; the feature channel, by contrast, lets a
    rejection lapse when only another feature differs a minute later (the test above)."""
    rng = random.Random(5)
    config = DriftConfig(window=200, check_every=20, variance_test="volatility")
    monitor = DriftMonitor("X", config)
    alerts = []
    for i in range(4000):
        values = {"ret_1": rng.gauss(0.0, 3.0 if 1500 <= i < 1600 else 1.0),
                  "ret_5": rng.gauss(0.0, 3.0 if i >= 2030 else 1.0)}
        alerts += [a for a in monitor.update_features(values, 1_700_000_000_000 + i * 100, ("ret_1", "ret_5"))
                   if a["status"] == "FIRING" and a["kind"] == "VARIANCE"]
    assert len(alerts) >= 1 and alerts[0]["affected_features"] == ["ret_1"]
    assert 1_700_000_000_000 + 1500 * 100 + 60_000 <= alerts[0]["created_time_ms"] < 1_700_000_000_000 + 2030 * 100 + 60_000


def _deferrals(a_burst: range, b_burst: range) -> tuple[list[tuple[list[str], int]], list[bool], list[int]]:
    """Ten events a second, a and b shifted by 2 sd in their bursts, a reference that ages every 36 s of
    event time: the rejections that waited (streams named, time), whether the reference was kept at each
    event while one waited, and how many events after the last of them lapsed it was taken again. No
    alert fires (asserted)."""
    rng = random.Random(11)
    monitor = DriftMonitor("X", DriftConfig(window=200, check_every=20, variance_tests=False,
                                            reference_max_age_hours=0.01))
    chain, kept, refreshed_after = [], [], []
    for i in range(6000):
        values = {"a": rng.gauss(2.0 if i in a_burst else 0.0, 1.0), "b": rng.gauss(2.0 if i in b_burst else 0.0, 1.0)}
        channel = monitor.channels.get("FEATURE")
        before = (channel.reference_times, channel.pending) if channel is not None else None
        assert not [a for a in monitor.update_features(values, 1_700_000_000_000 + i * 100, ("a", "b"))
                    if a["status"] == "FIRING"]
        channel = monitor.channels["FEATURE"]
        if channel.pending is not None and (not chain or chain[-1][1] != channel.pending[0]):
            chain.append((channel.pending[1][2], channel.pending[0]))
        if before is None:
            continue
        if before[1] is not None:
            kept.append(channel.reference_times == before[0])
            lapsed_at = i
        elif kept and not refreshed_after and channel.reference_times != before[0]:
            refreshed_after.append(i - lapsed_at)
    return chain, kept, refreshed_after


def test_a_reference_aged_while_a_rejection_waited_is_taken_again_once_the_rejection_lapses():
    """The other side of the test above: the refresh a pending rejection put off is not lost. Feature a
    jumps for 10 s (rejected, then gone a minute later, so no incident); the reference, aged meanwhile,
    is taken again at the first event with nothing pending."""
    chain, kept, refreshed_after = _deferrals(range(3000, 3100), range(0))
    assert [streams for streams, _ in chain] == [["a"]]
    assert len(kept) >= 500 and all(kept)  # a minute of events, the reference kept throughout
    assert refreshed_after == [1]  # the event after the one that let the rejection lapse


def test_a_chain_of_rejections_defers_the_refresh_until_the_last_one_lapses():
    """The chain the test above leaves out: a burst of a (10 s) is rejected; at its confirmation a minute
    later a is back to normal but b, in a burst of its own, is rejected at alpha by that scheduled check,
    so a new rejection waits, and the aged reference waits with it. Neither lasts a minute: nothing fires;
    the reference is taken again at the event after b's rejection lapses, and not before."""
    chain, kept, refreshed_after = _deferrals(range(3000, 3100), range(3560, 3660))
    assert [streams for streams, _ in chain] == [["a"], ["b"]]
    assert chain[1][1] - chain[0][1] == 60_000  # b's rejection is the check that confirmed nothing of a's
    assert len(kept) >= 1100 and all(kept)  # two minutes of events, the aged reference kept throughout
    assert refreshed_after == [1]
