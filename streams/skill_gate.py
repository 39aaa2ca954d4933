"""The skill gate: market forecasts stay the constant 0.5 until the experts have shown skill by a test
that holds its level at every moment, whatever the stopping rule.

Why: on a market where nothing can be predicted, any forecast other than 0.5 loses log-loss on
average, and a mixture that starts with weight on its members pays that loss before it has learned
there is nothing to find (``K (-ln pi)`` nats for ``K`` slots: on one-minute klines about 0.001 nats
an outcome, measured on every shipped day). No choice of initial weights escapes it, because a
mixture that may move toward a member at all pays for the possibility. A forecast that *is* the
constant until the evidence says otherwise pays nothing.

The test. The mixture's slots (:mod:`streams.ensemble`) each serve forecasts whose outcomes do not
overlap: a slot's next forecast is made only after its last one has matured. For slot ``j`` (from 1)
and every expert ``i`` but the constant, the gate keeps ``S_ij``, the sum of ``ln(2 p_i(y))`` over the
slot's outcomes: the log of the likelihood ratio of the expert against the constant. Under the null
hypothesis that every outcome is a fair coin given what was known when its forecast was made,
``M_j = mean_i exp(S_ij)`` is a nonnegative martingale with mean 1 along the slot's outcomes (each
expert's probability is fixed at forecast time), so by Ville's inequality ``P(sup M_j >= 1 / a) <= a``.
The gate opens when some slot reaches ``M_j >= pi^2 j^2 / (6 alpha)``: over all slots at most
``alpha`` in total (``sum 1/j^2 = pi^2 / 6``). So on a stream without skill the published forecast
is exactly 0.5 throughout, with probability at least ``1 - alpha``, for any length of stream.
Outcomes that mature flat are not seen (the hypothesis is about the direction of a move). Pooling
the slots' evidence in one product would not be a test: overlapping outcomes (five-minute ones taken
every minute) share most of their moves, and the product would count the same move several times.

What it costs where there is skill: the time the slowest-moving valid evidence takes. Measured
(``bench/skill.py``, alpha 0.01): at the next mid change the gate opens after 137-150 outcomes and
the captures' log-loss moves by less than 0.001; one second ahead at book tickers, with ~150
forecasts outstanding, a slot sees one outcome a second and the gate opened after 7,069 of BTCUSDT's
18,565 scored outcomes (ETHUSDT 7,774 of 15,962): about two minutes of a six-minute capture at 0.5.
The shipped kline days stayed at least 3.7 nats below the threshold (their largest ``ln M_j`` minus
``ln`` threshold); one of their copies made to trend (``bench/skill.py --trend``, 0.15 sd) opened it
1,260 outcomes into the day.

>>> gate = SkillGate(0.01)
>>> round(gate.threshold(1), 3)
5.103
>>> outcomes = 1
>>> while not gate.observe(0, {"constant": 0.5, "member": 0.8}, 1):
...     outcomes += 1
>>> outcomes, gate.open  # 11 ln 1.6 = 5.17
(11, True)
"""

from __future__ import annotations

import math


class SkillGate:
    """Per-slot likelihood-ratio martingales of the experts against the constant 0.5; open once any
    crosses its share of ``alpha`` (see the module docstring)."""

    __slots__ = ("alpha", "_sums", "_open", "_best")

    def __init__(self, alpha: float = 0.01):
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        self.alpha = alpha
        self._sums: list[dict[str, float]] = []  # slot -> expert -> sum of ln(2 p(y))
        self._open = False
        self._best = -math.inf  # the largest ln M_j - ln threshold_j seen so far

    @property
    def open(self) -> bool:
        return self._open

    @property
    def margin(self) -> float:
        """The largest ``ln M_j`` minus its threshold seen so far (>= 0 once open): how near the
        evidence came."""
        return self._best

    def threshold(self, slot_number: int) -> float:
        """``ln(pi^2 j^2 / (6 alpha))`` for slot ``j`` counted from 1."""
        return math.log(math.pi ** 2 * slot_number * slot_number / (6.0 * self.alpha))

    def evidence(self, slot: int) -> float:
        """``ln M_j`` of the slot numbered ``slot`` from 0 (0 before any outcome)."""
        sums = self._sums[slot] if slot < len(self._sums) else {}
        if not sums:
            return 0.0
        top = max(sums.values())
        return top + math.log(sum(math.exp(s - top) for s in sums.values()) / len(sums))

    def observe(self, slot: int, experts: dict[str, float], y: int) -> bool:
        """The outcome ``y`` of a forecast served by ``slot`` (from 0), with every expert's probability
        of "up" at forecast time (the constant's is ignored). Returns whether the gate opened now."""
        if self._open:
            return False
        if y not in (0, 1):
            raise ValueError(f"outcome must be 0 or 1, got {y!r}")
        while len(self._sums) <= slot:
            self._sums.append({})
        sums = self._sums[slot]
        for name, p in experts.items():
            if name == "constant":
                continue
            likelihood = p if y == 1 else 1.0 - p
            sums[name] = sums.get(name, 0.0) + math.log(2.0 * max(likelihood, 1e-300))
        margin = self.evidence(slot) - self.threshold(slot + 1)
        if margin > self._best:
            self._best = margin
        if margin >= 0.0:
            self._open = True
            self._sums = []  # nothing reads them once open
        return self._open
