"""References every forecast is scored against: what no skill, or a trivial rule, already gets.

* ``constant`` — always 0.5: no information at all.
* ``prior`` — :class:`RunningPrior`, the smoothed frequency of "up" among the outcomes matured so far
  (so with the same delay as the models), the outcomes that mature together counting once: no
  information about the moment, only about the base rate.
* ``persistence`` — :class:`Persistence`, the last realised label repeats.
* ``trade_side`` — :class:`TradeSide`, up if the last trade was buyer-initiated: on trade prices a
  short horizon is mostly bid-ask bounce, which this one bit already predicts.
* ``queue_imbalance`` — :class:`QueueImbalanceReference`, the one-feature model a microstructure
  analyst would try first where there is book data: an online logistic regression (River, SGD 0.05)
  on ``(bid_qty - ask_qty) / (bid_qty + ask_qty)``; scored by ``livelearn evaluate``
  (:mod:`streams.evaluation`), not published with every prediction.

Skill is reported against the first two (see :mod:`streams.scoring`); the others show what trivial
rules or a one-feature model get, they are not the bar. All learn from the same matured outcomes as
the models.

>>> prior = RunningPrior()
>>> for y in (1, 1, 1, 0):
...     prior.learn(y)
>>> round(prior.p_up, 4)
0.5227
"""

from __future__ import annotations

# Beta(c, c) prior of the running frequency: market up-frequencies at short horizons sit near 0.5, and
# overlapping horizons make consecutive outcomes correlated (fewer independent ones than outcomes), so
# a light (Laplace) prior lets the running frequency wander: on 1-minute klines it lost ~0.007 nats
# per outcome to the constant 0.5 at c = 1, ~0.004 at c = 20.
PRIOR_STRENGTH = 20.0


class RunningPrior:
    """``(ups + c) / (n + 2 c)`` over the outcomes learned so far, each with a weight: the learner gives
    each of the ``k`` outcomes that mature at one vector ``1 / k``. One price observation resolved them
    all (at the next mid change, every forecast that waited for it, with one label), so they are one
    piece of evidence about the base rate, not ``k``: counted one by one, 37 such "up"s on a quiet
    futures book (CTKUSDT) took the prior to 0.74 and the 73 forecasts the next mid change resolved
    down were scored against it. With one outcome a vector (a horizon in ticks) every weight is 1.

    >>> prior = RunningPrior()
    >>> for _ in range(40):
    ...     prior.learn(1, 1 / 40)
    >>> round(prior.p_up, 4)
    0.5122
    """

    __slots__ = ("ups", "n", "c")

    def __init__(self, c: float = PRIOR_STRENGTH):
        if c <= 0:
            raise ValueError("c must be > 0")
        self.ups: float = 0.0
        self.n: float = 0.0
        self.c = c

    @property
    def p_up(self) -> float:
        return (self.ups + self.c) / (self.n + 2.0 * self.c)

    def learn(self, y: int, weight: float = 1.0) -> None:
        self.ups += weight * y
        self.n += weight


class _HitRate:
    """A rule's smoothed, decaying hit rate, which turns its yes/no call into a probability (so its
    log-loss is finite and it is calibrated)."""

    __slots__ = ("hits", "trials", "decay")

    def __init__(self, decay: float = 0.99):
        self.decay = decay
        self.hits = 1.0  # one hit, one miss
        self.trials = 2.0

    def probability_up(self, says_up: bool) -> float:
        p_right = min(max(self.hits / self.trials, 0.01), 0.99)
        return p_right if says_up else 1.0 - p_right

    def learn(self, right: bool) -> None:
        self.hits = self.decay * self.hits + (1.0 if right else 0.0)
        self.trials = self.decay * self.trials + 1.0


class Persistence:
    """The last realised label repeats, with probability = smoothed hit rate of that rule."""

    name = "persistence"

    def __init__(self, decay: float = 0.99):
        self.rate = _HitRate(decay)
        self.last: int | None = None

    def predict_proba_one(self, x: dict[str, float]) -> dict[int, float]:
        if self.last is None:
            return {0: 0.5, 1: 0.5}
        p_up = self.rate.probability_up(self.last == 1)
        return {0: 1.0 - p_up, 1: p_up}

    def learn_one(self, x: dict[str, float], y: int, w: float = 1.0) -> None:
        if self.last is not None:
            self.rate.learn(y == self.last)
        self.last = y


class TradeSide:
    """Up if the last trade was buyer-initiated (``last_trade_sign`` > 0), with the rule's smoothed hit
    rate as the probability; 0.5 where the vector has no trade side (klines, datasets)."""

    name = "trade_side"
    features = ("last_trade_sign",)  # all it reads (the guard checks no more)

    def __init__(self, decay: float = 0.99):
        self.rate = _HitRate(decay)

    def predict_proba_one(self, x: dict[str, float]) -> dict[int, float]:
        sign = x.get("last_trade_sign")
        if not sign:
            return {0: 0.5, 1: 0.5}
        p_up = self.rate.probability_up(sign > 0)
        return {0: 1.0 - p_up, 1: p_up}

    def learn_one(self, x: dict[str, float], y: int, w: float = 1.0) -> None:
        # w (a member's sample weight) is not used: the hit rate counts outcomes, as Persistence does.
        sign = x.get("last_trade_sign")
        if sign:
            self.rate.learn((sign > 0) == (y == 1))


class QueueImbalanceReference:
    """Online logistic regression on the queue imbalance alone (see the module docstring)."""

    name = "queue_imbalance"
    features = ("book_imbalance",)

    def __init__(self):
        from river import linear_model, optim

        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(0.05))

    @staticmethod
    def inputs(values: dict[str, float]) -> dict[str, float] | None:
        imbalance = values.get("book_imbalance")
        return None if imbalance is None else {"qi": imbalance}

    def predict(self, x: dict[str, float]) -> float:
        return self.model.predict_proba_one(x).get(True, 0.5)

    def learn(self, x: dict[str, float], y: int) -> None:
        self.model.learn_one(x, bool(y))

    def predict_proba_one(self, x: dict[str, float]) -> dict[int, float]:
        """As a member (River's API): 0.5 where the vector has no book."""
        inputs = self.inputs(x)
        p_up = 0.5 if inputs is None else self.predict(inputs)
        return {0: 1.0 - p_up, 1: p_up}

    def learn_one(self, x: dict[str, float], y: int, w: float = 1.0) -> None:
        inputs = self.inputs(x)
        if inputs is not None:
            self.model.learn_one(inputs, bool(y), w=w)
