"""What a partition reports about a symbol's learner besides its predictions: the scores a metrics
exporter shows (:func:`scores`) and the ``performance`` record (:func:`performance_record`), with the
log-loss skill of the ensemble and each member against the no-skill references (:func:`skill`).

Plain functions of a :class:`streams.learning.SymbolLearner`, read only: asking for a report never
changes what the learner predicts next.

>>> from streams.learning import LearnerConfig, SymbolLearner
>>> learner = SymbolLearner("BTCUSDT", LearnerConfig(members=("logreg",)))
>>> sorted(skill(learner)["ensemble"])[:3]
['vs_constant', 'vs_constant_high', 'vs_constant_low']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streams.models import usable

if TYPE_CHECKING:
    from streams.learning import SymbolLearner
    from streams.pipeline import SymbolActivity


def _quantile(values, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _finite_or_none(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None


def skill(learner: SymbolLearner) -> dict[str, dict[str, float]]:
    """Log-loss skill of the ensemble and each member against the prior and the constant, with 95%
    intervals (batch means over blocks of at least four times the mean number of vectors between
    a forecast and its outcome, and at least 20; an event's outcomes never split)."""
    out = {}
    for name in ("ensemble", *usable(learner.config.members, learner.model_features)):
        s, low, high = learner.blocks.skill(name, "prior")
        c, c_low, c_high = learner.blocks.skill(name, "constant")
        out[name] = {"vs_prior": s, "vs_prior_low": low, "vs_prior_high": high, "vs_constant": c,
                     "vs_constant_low": c_low, "vs_constant_high": c_high}
    return out


def scores(learner: SymbolLearner) -> dict[str, Any]:
    """What the metrics exporter shows of a symbol (agents.metrics)."""
    return {
        "accuracy": {name: s.accuracy for name, s in learner.scores.items() if s.n},
        "log_loss": {name: s.log_loss for name, s in learner.scores.items() if s.n},
        "weights": learner.ensemble.weights(),
        "skill": skill(learner), "flat_share": learner.flat_share,
        "skill_shown": learner.ensemble.mixture().skill_shown,
    }


def performance_record(learner: SymbolLearner, seen: SymbolActivity, event_time_ms: int) -> dict[str, Any]:
    """A ``performance`` record: scores, skill, the mixture's state and the symbol's latencies."""
    mixture = learner.ensemble.mixture()
    return {
        "symbol": learner.symbol, "event_time_ms": event_time_ms, "model_id": learner.model_id,
        "model_version": learner.version, "champion": learner.champion,
        "labelled": learner.scores["ensemble"].total, "members": learner.performance(),
        "weights": learner.ensemble.weights(),
        "skill": {name: {k: _finite_or_none(v) for k, v in values.items()}
                  for name, values in skill(learner).items()},
        "outcomes": learner.outcomes, "flat": learner.flat,
        "regret_bound": mixture.regret_bound, "slots": len(mixture.slots), "skill_shown": mixture.skill_shown,
        "latency_p50_ms": _quantile(seen.latencies_ms, 0.5), "latency_p99_ms": _quantile(seen.latencies_ms, 0.99),
        "label_lag_p50_ms": _quantile(seen.label_lags_ms, 0.5), "events": seen.events, "errors": seen.errors,
    }
