"""Online recalibration of a member's probability: Platt scaling learned from matured outcomes.

A member can be informative and still badly calibrated: a slowly learning linear model stays too close
to 0.5, a tree's pure leaves say 0 or 1. The recalibrated probability is

    p' = sigmoid(a * logit(p) + b)

with ``(a, b)`` fitted online by a Newton step per outcome on the log-loss, with the Fisher information
``A <- rho A + p'(1 - p') u u^T`` (``u = (logit p, 1)``) as the metric and ``A_0 = ridge * I`` around the
identity map ``(a, b) = (1, 0)``: with few outcomes ``p' ~ p``; a member that is pure noise ends with
``a ~ 0``, its recalibrated version close to the base rate. ``rho`` (forgetting) keeps it following a
member whose calibration drifts (memory about ``1 / (1 - rho)`` outcomes). An outcome learned with a
``weight`` (``1 / k`` for each of ``k`` that mature together) scales its gradient and information by it
and forgets by ``rho ** weight``.

Both the raw and the recalibrated member are experts of the ensemble (:mod:`streams.ensemble`), whose
guarantee holds against each of them, so recalibration can only add to what the mixture can reach.

>>> scaler = PlattScaler()
>>> import random
>>> rng = random.Random(1)
>>> for _ in range(3000):
...     truth = rng.random()
...     shy = 0.5 + (truth - 0.5) * 0.2          # an informative member that is far too close to 0.5
...     scaler.learn(shy, int(rng.random() < truth))
>>> round(scaler.a, 1) > 3.0, abs(scaler.predict(0.55) - 0.75) < 0.1
(True, True)
"""

from __future__ import annotations

import math

Z_LIMIT = 12.0
A_MIN = 0.01


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    return math.log(p / (1.0 - p))


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class PlattScaler:
    __slots__ = ("a", "b", "a11", "a12", "a22", "rho", "n", "bias")

    def __init__(self, ridge: float = 4.0, rho: float = 0.999, bias: bool = True):
        if ridge <= 0 or not 0.0 < rho <= 1.0:
            raise ValueError("ridge must be > 0 and rho in (0, 1]")
        self.bias = bias
        self.a, self.b = 1.0, 0.0
        self.a11 = self.a22 = ridge
        self.a12 = 0.0
        self.rho = rho
        self.n = 0

    def predict(self, p: float) -> float:
        z = max(-Z_LIMIT, min(Z_LIMIT, self.a * logit(p) + self.b))
        return sigmoid(z)

    def learn(self, p: float, y: int, weight: float = 1.0) -> None:
        u = logit(p)
        q = sigmoid(max(-Z_LIMIT, min(Z_LIMIT, self.a * u + self.b)))  # self.predict(p), logit(p) once
        curvature = max(q * (1.0 - q), 1e-6)
        rho = self.rho
        if weight != 1.0:
            curvature *= weight
            rho **= weight
        self.a11 = rho * self.a11 + curvature * u * u
        self.a12 = rho * self.a12 + curvature * u
        self.a22 = rho * self.a22 + curvature
        g1, g2 = (q - y) * u * weight, (q - y) * weight
        if not self.bias:
            self.a = max(A_MIN, self.a - g1 / self.a11)
            self.n += 1
            return
        det = self.a11 * self.a22 - self.a12 * self.a12
        if det <= 0:
            return
        self.a -= (self.a22 * g1 - self.a12 * g2) / det
        self.b -= (self.a11 * g2 - self.a12 * g1) / det
        self.n += 1
