"""Guarded updates: a learning step that breaks a member is undone before the next prediction.

:class:`GuardedMember` wraps a member (same River-style API). Around every ``learn_one``:

* before: a label other than 0/1 or a non-finite feature value is refused (the member never sees it);
* after: the member's probability on the same ``x`` must be finite, and its parameters must be finite
  (members that expose ``parameters_finite()``);
* loss spike: when the input is an outlier (some feature more than ``suspect_z`` standard deviations
  from the mean of the inputs accepted so far, bounds refreshed at every snapshot), the member's mean log-loss on the last
  ``holdout`` accepted samples is measured before and after the step; a rise above ``spike_factor``
  times (and by at least ``spike_floor`` nats) undoes the step. A single extreme value can wreck a
  running scaler without producing a NaN, which only this check sees. It costs ``2 * holdout``
  predictions, paid on outliers only; ordinary steps cost one extra prediction (none when a member that
  trains in batches, like the MLP, did not train on this call).
* degenerate output: a member whose probability has been exactly the same for ``degenerate_after``
  predictions in a row while it kept learning (at least ``degenerate_after // 4`` accepted steps in
  that run with some input it reads: a rule member on klines, which carry neither a trade side nor a
  book, says 0.5 throughout and is not broken) is saturated or dead (a price of 1e-300 once left both
  members at exactly 0.5 for good).
  It is restored from its last good snapshot; snapshots are not refreshed while the output is stuck,
  so the restored state is one from before the run began. One cheap comparison a prediction.
* a failed check restores the last good state: a snapshot (pickle) taken every ``snapshot_every``
  accepted steps, and always before the first step.

Refused and undone steps are counted and kept in ``rejections`` (drained by the learner into
``REJECTED_UPDATE`` model events).

>>> from streams.models import make_member
>>> member = GuardedMember(make_member("logreg", features=("a",)))
>>> member.learn_one({"a": 1.0}, 1)
True
>>> member.learn_one({"a": float("nan")}, 1)
False
>>> member.rejections[-1][0]
'non_finite_input'
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from streams import snapshots
from streams.scoring import log_loss


def _always() -> bool:
    return True


def learn_weighted(member: Any, x: dict[str, float], y: int, w: float) -> None:
    """``member.learn_one`` with a sample weight only where one is given: a member written to River's
    API may take none (``learn_one(x, y)``), and with weight 1 River's own call stays the same."""
    if w == 1.0:
        member.learn_one(x, y)
    else:
        member.learn_one(x, y, w)


class GuardedMember:
    def __init__(self, member: Any, snapshot_every: int = 250, suspect_z: float = 20.0, holdout: int = 32,
                 spike_factor: float = 1.2, spike_floor: float = 0.05, degenerate_after: int = 200):
        self.member = member
        # Checks and input statistics cover the features the member reads (all of x when it does not say).
        self.reads: tuple[str, ...] | None = getattr(member, "features", None)
        self.degenerate_after = degenerate_after
        self.last_p: float | None = None
        self.same_run = 0  # predictions in a row with exactly last_p
        self.learned_in_run = 0  # accepted steps during that run
        self.name = getattr(member, "name", type(member).__name__)
        self.snapshot_every, self.suspect_z, self.spike_factor, self.spike_floor = (
            snapshot_every, suspect_z, spike_factor, spike_floor)
        self.snapshot = snapshots.dumps(member)
        self.accepted_since_snapshot = 0
        self.recent: deque[tuple[dict[str, float], int]] = deque(maxlen=holdout)
        self.stats: dict[str, list[float]] = {}  # feature -> [n, mean, m2] of accepted inputs
        self.bounds: dict[str, tuple[float, float]] = {}
        self.rejected = 0
        self.rejections: list[tuple[str, str]] = []

    def predict_proba_one(self, x: dict[str, float]) -> dict[int, float]:
        proba = self.member.predict_proba_one(x)
        p = proba[1]
        if p == self.last_p:
            self.same_run += 1
            if self.same_run >= self.degenerate_after and self.learned_in_run >= self.degenerate_after // 4:
                self.member = snapshots.loads(self.snapshot)
                self.accepted_since_snapshot = 0
                self._refuse("degenerate_output", f"probability exactly {p!r} for {self.same_run} predictions while "
                                                  f"learning {self.learned_in_run} steps; restored the last good snapshot")
                self.last_p, self.same_run, self.learned_in_run = None, 0, 0
        else:
            self.last_p, self.same_run, self.learned_in_run = p, 0, 0
        return proba

    def __getattr__(self, name: str) -> Any:  # learning_rate, raise_learning_rate, features ...
        if name == "member":
            raise AttributeError(name)
        return getattr(self.member, name)

    def _refuse(self, code: str, reason: str) -> bool:
        self.rejected += 1
        self.rejections.append((code, f"{self.name}: {reason}"))
        return False

    def _refresh_bounds(self) -> None:
        """Outlier bounds, mean +- suspect_z sd of the accepted inputs, refreshed at each snapshot."""
        bounds = {}
        for name, (n, mean, m2) in self.stats.items():
            if n >= 30:
                spread = self.suspect_z * max(math.sqrt(m2 / (n - 1)), 1e-12 * abs(mean), 1e-300)
                bounds[name] = (mean - spread, mean + spread)
        self.bounds = bounds

    def _holdout_loss(self) -> float:
        predict = self.member.predict_proba_one
        return sum(log_loss(predict(x)[1], y) for x, y in self.recent) / len(self.recent)

    def learn_one(self, x: dict[str, float], y: int, w: float = 1.0) -> bool:
        """Learn (with sample weight ``w``) unless refused or undone; returns whether the step was kept."""
        if y not in (0, 1):
            return self._refuse("invalid_label", f"label {y!r} is not 0 or 1")
        reads = self.reads
        read = x if reads is None else {name: x[name] for name in reads if name in x}
        # One pass: any non-finite value refuses the step; the first value outside its bounds (once
        # there are held-out samples to measure a loss spike on) makes the step a suspect.
        bounds = self.bounds if self.recent else None
        outlier = None
        isfinite = math.isfinite
        for name, value in read.items():
            if not isfinite(value):
                return self._refuse("non_finite_input", f"feature {name} = {value!r}")
            if bounds and outlier is None:
                bound = bounds.get(name)
                if bound is not None and not bound[0] <= value <= bound[1]:
                    outlier = name
        before = self._holdout_loss() if outlier else None
        steps = getattr(self.member, "steps", None)
        learn_weighted(self.member, x, y, w)
        problem = None
        if steps is not None and steps == self.member.steps and before is None:
            pass  # a member that trains in batches did not train on this call: nothing changed
        elif not math.isfinite(p_after := self.member.predict_proba_one(x)[1]):
            problem = ("non_finite_output", f"probability {p_after!r} after the step")
        elif not getattr(self.member, "parameters_finite", _always)():
            problem = ("non_finite_parameters", "NaN or infinite parameters after the step")
        elif before is not None and outlier is not None:
            after = self._holdout_loss()
            if after > self.spike_factor * before and after - before > self.spike_floor:
                problem = ("loss_spike", f"outlier {outlier} = {x[outlier]!r}: log-loss on the last "
                                         f"{len(self.recent)} samples rose from {before:.3g} to {after:.3g}")
        if problem is not None:
            self.member = snapshots.loads(self.snapshot)
            self.accepted_since_snapshot = 0
            return self._refuse(*problem)
        self.recent.append((x, y))
        stats = self.stats
        for name, value in read.items():  # Welford's update, with the list read and written once each
            stat = stats.get(name)
            if stat is None:
                stat = stats[name] = [0, 0.0, 0.0]
            n, mean, m2 = stat
            n += 1
            delta = value - mean
            mean += delta / n
            stat[0], stat[1], stat[2] = n, mean, m2 + delta * (value - mean)
        self.accepted_since_snapshot += 1
        if self.same_run and read:  # a step without any input the member reads teaches it nothing
            self.learned_in_run += 1
        if self.accepted_since_snapshot >= self.snapshot_every and self.same_run < self.degenerate_after // 4:
            self.snapshot = snapshots.dumps(self.member)
            self.accepted_since_snapshot = 0
            self._refresh_bounds()
        return True

    def drain(self) -> list[tuple[str, str]]:
        out, self.rejections = self.rejections, []
        return out
