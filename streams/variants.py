"""Champion and challengers: a sequential paired test that may be checked after every event.

Losses are Brier scores ``(p - y)^2`` in [0, 1] (a proper scoring rule with a known bound, which the
test needs). For a challenger, each labelled event gives the paired difference
``d = loss_champion - loss_challenger`` in [-1, 1] (positive: the challenger did better on that event).

Why not a t-test: checking a fixed-sample test after every event and stopping at the first
"significant" result inflates the false-promotion rate far above alpha (see the simulation test). This
test is a *test martingale* (testing by betting, Waudby-Smith and Ramdas 2023): the wealth

    K_n = mean over lambda in LAMBDAS of  prod_{i <= n} (1 + lambda * d_i)

is, under the null "the challenger is not better" (``E[d_i | past] <= 0``), a non-negative
supermartingale with ``K_0 = 1`` (each factor has conditional mean <= 1 and stays positive because
|lambda * d| < 1; a mean of such processes is one too). Ville's inequality gives
``P(sup_n K_n >= 1/alpha) <= alpha``: the challenger is promoted when ``K_n >= 1/alpha`` (and at
least ``min_samples`` pairs were seen), and the false-promotion rate stays below alpha however often
the test is looked at. Confidence reported with a decision is ``1 - 1/K_n``; the effect size is the
mean difference divided by its standard deviation.

Rollback watches a promoted champion against the previous one, kept in shadow, with
``d = loss_new - loss_previous - margin``. It must catch a degradation that starts long after the
promotion, when a test martingale would first have to win back everything it lost while the new
champion was good; so it is an e-detector (Shin, Ramdas and Rinaldo 2023): per bet size a CUSUM of the
same bets, ``C_n = max(C_{n-1}, 1) * (1 + lambda * d_n)``, averaged over the bet sizes. Under "never
worse by more than the margin" its mean stays below the Shiryaev-Roberts statistic of the mixture, so
an alarm at ``C_n >= rollback_threshold`` comes on average no sooner than ``rollback_threshold``
paired outcomes (average run length). The previous champion is then restored.

>>> test = BettingTest()
>>> for _ in range(200):
...     test.update(0.2)
>>> test.wealth > 1e6, round(test.mean, 3)
(True, 0.2)
"""

from __future__ import annotations

import math
from typing import Any

LAMBDAS = (0.05, 0.1, 0.2, 0.35, 0.5)


class BettingTest:
    """Always-valid one-sided test of ``E[d] > 0`` for d in [-1, 1] (see the module docstring).

    With ``detector=True`` each bet's wealth restarts from 1 whenever it falls below 1 (CUSUM): a
    change detector whose alarms have an average run length of at least the threshold under the null.
    """

    __slots__ = ("log_wealth", "n", "total", "total_sq", "detector")

    def __init__(self, detector: bool = False):
        self.log_wealth = [0.0] * len(LAMBDAS)
        self.n = 0
        self.total = self.total_sq = 0.0
        self.detector = detector

    def update(self, d: float) -> None:
        d = -1.0 if d < -1.0 else 1.0 if d > 1.0 else d
        log_wealth = self.log_wealth
        floor = self.detector
        for i, lam in enumerate(LAMBDAS):
            if floor and log_wealth[i] < 0.0:
                log_wealth[i] = 0.0
            log_wealth[i] += math.log1p(lam * d)
        self.n += 1
        self.total += d
        self.total_sq += d * d

    @property
    def wealth(self) -> float:
        top = max(self.log_wealth)
        return math.exp(top) * sum(math.exp(w - top) for w in self.log_wealth) / len(LAMBDAS)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def effect_size(self) -> float:
        if self.n < 2:
            return 0.0
        variance = (self.total_sq - self.total * self.total / self.n) / (self.n - 1)
        if variance <= 0:
            return 0.0 if self.mean == 0 else math.copysign(math.inf, self.mean)
        return self.mean / math.sqrt(variance)

    def evidence(self) -> dict[str, str]:
        wealth = self.wealth
        return {"pairs": str(self.n), "mean_difference": f"{self.mean:.6g}", "effect_size": f"{self.effect_size:.4g}",
                "e_value": f"{wealth:.6g}", "confidence": f"{max(0.0, 1.0 - 1.0 / wealth):.6f}"}


def brier(p_up: float, y: int) -> float:
    return (p_up - y) * (p_up - y)


class VariantPolicy:
    """Promotion and rollback decisions for one symbol's champion and challengers.

    ``observe(losses)`` takes the Brier loss of every variant on one labelled event and returns at most
    one decision: ``("PROMOTION", challenger, evidence)`` or ``("ROLLBACK", previous, evidence)``.
    After a decision every test starts from scratch (evidence is never reused across decisions).

    >>> policy = VariantPolicy("a", ["b"], alpha=0.05, min_samples=50)
    >>> decision = None
    >>> while decision is None:
    ...     decision = policy.observe({"a": 0.25, "b": 0.09})
    >>> decision[0], decision[1], policy.champion, policy.previous
    ('PROMOTION', 'b', 'b', 'a')
    """

    def __init__(self, champion: str, challengers: list[str], alpha: float = 0.01, min_samples: int = 200,
                 rollback_margin: float = 0.02, rollback_threshold: float = 10_000.0):
        if not 0 < alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
        if rollback_threshold <= 1:
            raise ValueError("rollback_threshold must be above 1")
        self.champion = champion
        self.names = [champion, *challengers]
        self.alpha, self.min_samples, self.margin = alpha, min_samples, rollback_margin
        self.rollback_threshold = rollback_threshold
        self.previous: str | None = None
        self._reset()

    def _reset(self) -> None:
        self.tests = {name: BettingTest() for name in self.names if name != self.champion}
        self.rollback = BettingTest(detector=True) if self.previous is not None else None

    def observe(self, losses: dict[str, float]) -> tuple[str, str, dict[str, str]] | None:
        champion_loss = losses[self.champion]
        threshold = 1.0 / self.alpha
        if self.rollback is not None and self.previous is not None:
            self.rollback.update(champion_loss - losses[self.previous] - self.margin)
            if self.rollback.n >= self.min_samples and self.rollback.wealth >= self.rollback_threshold:
                evidence = {**self.rollback.evidence(), "margin": repr(self.margin), "from": self.champion,
                            "threshold": repr(self.rollback_threshold)}
                restored, self.champion, self.previous = self.previous, self.previous, None
                self._reset()
                return "ROLLBACK", restored, evidence
        for name, test in self.tests.items():
            # While a rollback is being watched, the previous champion is judged by the rollback test.
            if name != self.previous:
                test.update(champion_loss - losses[name])
        best = max(self.tests, key=lambda n: self.tests[n].wealth, default=None)
        if best is not None:
            test = self.tests[best]
            if test.n >= self.min_samples and test.wealth >= threshold:
                evidence = {**test.evidence(), "alpha": repr(self.alpha), "replaced": self.champion}
                self.previous, self.champion = self.champion, best
                self._reset()
                return "PROMOTION", best, evidence
        return None

    def state(self) -> dict[str, Any]:
        return {"champion": self.champion, "previous": self.previous,
                "evidence": {name: test.wealth for name, test in self.tests.items()}}
