"""Drift statistics equal scipy on the same windows; corrections, incidents and false-alarm rate."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import stats

from streams.drift import (
    KS_SCREEN_P,
    Channel,
    DriftConfig,
    DriftMonitor,
    KsScreen,
    adjust,
    f_test,
    ks_statistic,
    ks_test,
    mann_whitney,
    severity,
    welch_test,
)

RTOL = 1e-12


def samples(seed: int, n1: int = 500, n2: int = 500, shift: float = 0.0, scale: float = 1.0, ties: bool = False):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, n1), rng.normal(shift, scale, n2)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    return a, b


@pytest.mark.parametrize("seed, shift, scale, ties, n2", [
    (0, 0.0, 1.0, False, 500), (1, 0.3, 1.0, False, 500), (2, 0.0, 2.0, True, 300), (3, 1.0, 0.5, True, 777)])
def test_ks_equals_scipy(seed, shift, scale, ties, n2):
    a, b = samples(seed, n2=n2, shift=shift, scale=scale, ties=ties)
    expected = stats.ks_2samp(a, b, method="asymp")
    d, p = ks_test(np.sort(a), b)
    assert d == pytest.approx(expected.statistic, rel=RTOL)
    assert p == pytest.approx(expected.pvalue, rel=RTOL, abs=1e-300)


@pytest.mark.parametrize("seed, shift, scale, n2", [(0, 0.0, 1.0, 500), (1, 0.2, 1.5, 350), (5, -0.5, 0.7, 900)])
def test_welch_equals_scipy(seed, shift, scale, n2):
    a, b = samples(seed, n2=n2, shift=shift, scale=scale)
    expected = stats.ttest_ind(a, b, equal_var=False)
    t, p, effect = welch_test(a, b)
    assert t == pytest.approx(expected.statistic, rel=RTOL)
    assert p == pytest.approx(expected.pvalue, rel=RTOL)
    assert effect >= 0


@pytest.mark.parametrize("seed, shift, ties, n2", [(0, 0.0, False, 500), (1, 0.3, True, 400), (2, -0.2, True, 640)])
def test_mann_whitney_equals_scipy(seed, shift, ties, n2):
    a, b = samples(seed, n2=n2, shift=shift, ties=ties)
    expected = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=True)
    u, p, _ = mann_whitney(a, b)
    assert u == pytest.approx(expected.statistic, rel=RTOL)
    assert p == pytest.approx(expected.pvalue, rel=RTOL)


@pytest.mark.parametrize("seed, scale, n2", [(0, 1.0, 500), (1, 1.3, 300), (2, 0.6, 800)])
def test_f_test_equals_the_f_distribution(seed, scale, n2):
    a, b = samples(seed, n2=n2, scale=scale)
    f = np.var(b, ddof=1) / np.var(a, ddof=1)
    dfn, dfd = len(b) - 1, len(a) - 1
    expected_p = 2 * min(stats.f.cdf(f, dfn, dfd), stats.f.sf(f, dfn, dfd))
    got_f, p, effect = f_test(a, b)
    assert got_f == pytest.approx(f, rel=RTOL)
    assert p == pytest.approx(min(1.0, expected_p), rel=RTOL)
    assert effect == pytest.approx(abs(np.log(f)), rel=RTOL)


def test_channel_windows_are_the_last_events_and_equal_scipy_on_them():
    config = DriftConfig(window=100, check_every=25)
    channel = Channel("FEATURE", ("x",), config)
    rng = np.random.default_rng(7)
    data = rng.normal(size=437)
    checked = 0
    for i, x in enumerate(data):
        if channel.add([x], i):
            (stream, test, d, p, _, _), = channel.check()
            expected = stats.ks_2samp(data[:100], data[i - 99:i + 1], method="asymp")
            assert d == pytest.approx(expected.statistic, rel=RTOL)
            if expected.pvalue <= KS_SCREEN_P:
                assert p == pytest.approx(expected.pvalue, rel=RTOL)
            else:  # screened or exact: above the screen level either way
                assert p >= KS_SCREEN_P
            checked += 1
    assert checked == (437 - 100) // 25


def test_ks_screen_returns_exact_p_values_wherever_they_could_matter():
    screen = KsScreen()
    rng = np.random.default_rng(11)
    screened = 0
    for _ in range(400):
        n = int(rng.integers(20, 300))
        reference = np.sort(rng.normal(size=n))
        current = rng.normal(loc=rng.choice([0.0, 0.0, 0.3]), size=int(rng.integers(20, 300)))
        d, en = ks_statistic(reference, current)
        expected = stats.ks_2samp(reference, current, method="asymp").pvalue
        was_known = d <= screen.safe_d.get(en, -1.0)
        p = screen.p_value(d, en)
        if expected <= KS_SCREEN_P:
            assert p == pytest.approx(expected, rel=RTOL) and not was_known
        else:
            assert p >= KS_SCREEN_P
            screened += was_known
    assert screened > 50  # the screen does save work


def test_bonferroni_and_benjamini_hochberg():
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjust(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert adjust(p, "bh") == pytest.approx(stats.false_discovery_control(p, method="bh"))
    with pytest.raises(ValueError):
        adjust(p, "holm-ish")


def test_severity_needs_both_significance_and_effect():
    assert severity(1e-9, 0.5, "ks_2samp", 0.001) == "CRITICAL"
    assert severity(1e-9, 0.05, "ks_2samp", 0.001) == "LOW"
    assert severity(5e-6, 0.25, "ks_2samp", 0.001) == "HIGH"


def test_one_shift_gives_one_incident_then_a_resolve():
    rng = random.Random(3)
    monitor = DriftMonitor("X", DriftConfig(window=200, check_every=20, variance_tests=False))
    alerts = []
    for i in range(3000):
        alerts += monitor.update_features({"a": rng.gauss(2.0 if i >= 1500 else 0.0, 1.0), "b": rng.gauss(0, 1)},
                                          i, ("a", "b"))
    firing = [a for a in alerts if a["status"] == "FIRING"]
    assert len(firing) == 1 and firing[0]["affected_features"] == ["a"]
    assert 1500 <= firing[0]["created_time_ms"] <= 1500 + 200
    resolved = [a for a in alerts if a["status"] == "RESOLVED"]
    assert len(resolved) == 1 and resolved[0]["alert_id"] == firing[0]["alert_id"]


def false_alarm_rate(correction: str, features: int, events: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    config = DriftConfig(window=200, check_every=50, alpha=0.01, correction=correction, variance_tests=False)
    monitor = DriftMonitor("X", config)
    names = tuple(f"f{j}" for j in range(features))
    data = rng.normal(size=(events, features))
    checks = alarms = 0
    for i in range(events):
        channel = monitor.channels.get("FEATURE")
        before = channel.count if channel else 0
        out = monitor.update_features(dict(zip(names, data[i], strict=True)), i, names)
        channel = monitor.channels["FEATURE"]
        if channel.count > before and channel.since_check == 0 and channel.last_results and channel.count > 200:
            checks += 1
        alarms += sum(1 for a in out if a["status"] == "FIRING")
        # Count every rejecting check, not only new incidents: reset the incident state.
        channel.open_alert = None
    return alarms / max(checks, 1)


def test_uncorrected_25_features_alarm_often_and_bonferroni_keeps_alpha():
    """With 25 features at alpha = 0.01, an uncorrected check rejects in a large share of no-drift
    windows; with Bonferroni the measured share stays near or below alpha."""
    raw = false_alarm_rate("none", 25, 6000, seed=11)
    corrected = false_alarm_rate("bonferroni", 25, 6000, seed=11)
    assert raw > 0.05
    assert corrected <= 0.03
    assert DriftConfig(alpha=0.001, check_every=50).expected_false_alarms_per_10k == pytest.approx(0.2)


@pytest.mark.parametrize("seed, scale, ties, n2", [(0, 1.0, False, 500), (1, 1.4, True, 300), (4, 0.8, False, 650)])
def test_levene_equals_scipy(seed, scale, ties, n2):
    from streams.drift import levene_test

    a, b = samples(seed, n2=n2, scale=scale, ties=ties)
    expected = stats.levene(a, b, center="median")
    w, p, _ = levene_test(a, b)
    assert w == pytest.approx(expected.statistic, rel=RTOL)
    assert p == pytest.approx(expected.pvalue, rel=RTOL)


def test_alerts_below_the_minimum_severity_are_not_published():
    rng = random.Random(5)
    loud = DriftMonitor("X", DriftConfig(window=100, check_every=20, variance_tests=False))
    quiet = DriftMonitor("X", DriftConfig(window=100, check_every=20, variance_tests=False, min_severity="CRITICAL"))
    out_loud, out_quiet = [], []
    for i in range(1000):
        x = {"a": rng.gauss(0.6 if i >= 500 else 0.0, 1.0)}  # detected at once: low severity
        out_loud += loud.update_features(x, i, ("a",))
        out_quiet += quiet.update_features(x, i, ("a",))
    assert out_loud and all(a["severity"] != "CRITICAL" for a in out_loud)
    assert out_quiet == []


@pytest.mark.parametrize("seed, shift", [(0, 0.0), (1, 0.15), (2, -0.1)])
def test_one_sided_concept_tests_equal_scipy(seed, shift):
    a, b = samples(seed, n2=450, shift=shift, ties=seed == 2)
    t, p, _ = welch_test(a, b, alternative="less")
    expected = stats.ttest_ind(a, b, equal_var=False, alternative="less")
    assert (t, p) == (pytest.approx(expected.statistic, rel=RTOL), pytest.approx(expected.pvalue, rel=RTOL))
    u, p, _ = mann_whitney(a, b, alternative="less")
    expected = stats.mannwhitneyu(a, b, alternative="less", method="asymptotic", use_continuity=True)
    assert (u, p) == (pytest.approx(expected.statistic, rel=RTOL), pytest.approx(expected.pvalue, rel=RTOL))
