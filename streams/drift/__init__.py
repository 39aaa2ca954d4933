"""Windowed two-sample drift tests and the alert decisions built on them.

A *channel* is a family of streams tested together: feature drift (KS per feature, plus a Welch t per
feature corrected for serial correlation), variance change (a rise of volatility: a one-sided,
serial-correlation-corrected t of log absolute deviations of the return-like features; Levene per
feature where a stream has none),
concept drift (Welch t and Mann-Whitney U on the per-event log-loss), prediction drift (KS on the
predicted probability, confirmed with both windows' inputs re-scored) and basis shifts (a pair's price
against the other pairs of its base asset). The package, in the order an
event meets it:

* :mod:`streams.drift.statistics` — the tests, equal to scipy's, and the multiple-testing correction;
* :mod:`streams.drift.correlation` — serial correlation: thinning lags and variance inflation;
* :mod:`streams.drift.channel` — windows, references and one check class per channel kind;
* :mod:`streams.drift.volatility` — which features are return-like; them in units of recent volatility (optional);
* :mod:`streams.drift.seasonality` — them in units of their usual size at that hour of the day;
* :mod:`streams.drift.basis` — each pair's price against each other pair of its group (the BASIS channel);
* :mod:`streams.drift.monitor` — a symbol's channels and the incidents (FIRING, RESOLVED) they raise;
* :mod:`streams.drift.config` — the configuration and an alert's severity.

The false-alarm budget: a check of all a channel's streams rejects with probability at most
``alpha`` under no drift, so at most ``alpha * 10_000 / check_every`` false alarms per 10k events and
channel (fewer in practice: overlapping windows are correlated).

>>> import random
>>> rng = random.Random(0)
>>> monitor = DriftMonitor("X", DriftConfig(window=200, check_every=50, variance_tests=False))
>>> alerts = []
>>> for i in range(1200):
...     shift = 3.0 if i >= 600 else 0.0
...     alerts += monitor.update_features({"a": rng.gauss(shift, 1.0)}, 1_700_000_000_000 + i * 1_000)
>>> [(a["kind"], a["status"], a["affected_features"]) for a in alerts][:1]
[('FEATURE', 'FIRING', ['a'])]
"""

from streams.drift.basis import BasisTracker
from streams.drift.channel import CHECKS, Channel, CheckResult
from streams.drift.config import BASIS_CONFIG, EFFECT_THRESHOLDS, SEVERITIES, DriftConfig, severity
from streams.drift.correlation import autocorrelations, decorrelation_lags, first_lag_below
from streams.drift.monitor import DriftMonitor
from streams.drift.statistics import (
    adjust,
    f_test,
    ks_p_value,
    ks_p_values,
    ks_statistic,
    ks_statistics,
    ks_test,
    levene_test,
    levene_tests,
    mann_whitney,
    screening_distance,
    welch_from_moments,
    welch_test,
    welch_tests,
)

__all__ = [
    "BASIS_CONFIG", "BasisTracker", "CHECKS", "Channel", "CheckResult", "DriftConfig", "DriftMonitor", "EFFECT_THRESHOLDS", "SEVERITIES", "adjust",
    "autocorrelations", "decorrelation_lags", "f_test", "first_lag_below", "ks_p_value", "ks_p_values",
    "ks_statistic", "ks_statistics", "ks_test", "levene_test", "levene_tests", "mann_whitney",
    "screening_distance", "severity", "welch_from_moments", "welch_test", "welch_tests",
]
