"""Ensemble members with River's API: ``predict_proba_one(x) -> {0: p, 1: p}`` and ``learn_one(x, y)``.

Label 1 means "the price is higher after the horizon", 0 "lower". ``x`` is a dict of features; members
pick their ``features`` out of it, in that order (absent features count as missing). The default is
:data:`streams.features.MODEL_FEATURES`; a labelled dataset replayed through the pipeline brings its own.

Members:

* ``persistence`` — a reference, not a member (:mod:`streams.references`).
* ``logreg`` — ``StandardScaler | LogisticRegression`` (River), SGD rate 0.005; ``logreg@0.05`` the
  same with another rate (for challenger variants).
* ``micro`` — the same model on the book and trade-flow features alone (:data:`MICRO_FEATURES`).
  On one-second book-ticker outcomes of the shipped captures, the full-feature logistic regression
  was worse than the running prior (log-loss 0.69 vs 0.72 ... 0.98) while this one reached 0.48:
  twenty price features that barely move between trades mostly add noise to SGD steps there. On
  klines it has no inputs and stays at the base rate; on a labelled dataset it reads its features.
* ``hat`` — Hoeffding Adaptive Tree (River) with Laplace-smoothed leaves (:class:`SmoothedTree`);
  opt-in, about 10x the cost of logreg.
* ``arf`` — Adaptive Random Forest of 10 trees (River); opt-in, about 40x.
* ``mlp`` — a small torch MLP trained online (see :class:`TorchMLP`).
* ``side`` and ``imbalance`` — the two microstructure rules of :mod:`streams.references` as members:
  ``side`` is :class:`~streams.references.TradeSide` (up if the last trade was buyer-initiated, at its
  running hit rate), ``imbalance`` is :class:`~streams.references.QueueImbalanceReference` (River's
  logistic regression, SGD 0.05, on the book imbalance alone). Both are 0.5 where a vector has neither
  (klines, datasets). Why members: the mixture's guarantee is against its best expert, and on real
  websocket captures these two rules beat it. Ten real five-minute captures (the two shipped and
  eight more of the same recorder: Binance spot, USD-M and COIN-M, 2024-08-08/09), a horizon of five
  price ticks, ``livelearn evaluate`` each on its own, 2026-12-06: with ``logreg,mlp,micro`` the
  ensemble's pooled log-loss was 0.340 where the queue-imbalance rule alone scored 0.348-0.533 on
  the four spot captures against the ensemble's 0.416-0.628, and the trade-side rule 0.206 against
  0.310 on a COIN-M one; with the two as members the ensemble scored 0.319 pooled (docs/STATUS.md has
  every file); on 58 real months of klines, where both are 0.5, 0.00002 nats an outcome worse
  pooled (their share of the starting weights).

>>> m = make_member("logreg", seed=1)
>>> m.predict_proba_one({"ret_1": 0.01})
{0: 0.5, 1: 0.5}
>>> m.learn_one({"ret_1": 0.01}, 1)
>>> round(m.predict_proba_one({"ret_1": 0.01})[1], 3) > 0.5
True
"""

from __future__ import annotations

import math
from typing import Any

from streams.features import MODEL_FEATURES
from streams.mlp import TorchMLP
from streams.references import Persistence, QueueImbalanceReference, TradeSide

MEMBER_NAMES = ("logreg", "mlp", "micro", "side", "imbalance", "hat", "arf")
# What the "micro" member reads: the book and trade-flow features, where short-horizon signal lives.
MICRO_FEATURES = ("book_imbalance", "microprice_dev_bps", "ofi_10", "spread_bps", "last_trade_sign",
                  "signed_flow_10s", "trade_sign_imbalance_20")


def select(x: dict[str, float], names: tuple[str, ...]) -> dict[str, float]:
    return {name: x[name] for name in names if name in x}


class RiverMember:
    """Adapter that feeds a River classifier the model features."""

    def __init__(self, name: str, model: Any, features: tuple[str, ...] = MODEL_FEATURES):
        self.name = name
        self.model = model
        self.features = features

    def predict_proba_one(self, x: dict[str, float]) -> dict[int, float]:
        proba = self.model.predict_proba_one(select(x, self.features))
        p_up = proba.get(1, 0.0) if proba else 0.5
        total = proba.get(0, 0.0) + proba.get(1, 0.0) if proba else 0.0
        if total <= 0.0:
            return {0: 0.5, 1: 0.5}
        if abs(total - 1.0) > 1e-9:
            # Trees can return unnormalised votes; a proper distribution passes through unchanged so
            # that the pipeline's probabilities equal River's bit for bit.
            p_up /= total
        return {0: 1.0 - p_up, 1: p_up}

    def learn_one(self, x: dict[str, float], y: int, w: float = 1.0) -> None:
        if w == 1.0 or self.name == "arf":  # ARF draws its own Poisson weights and takes none
            self.model.learn_one(select(x, self.features), y)
        else:
            self.model.learn_one(select(x, self.features), y, w=w)

    def parameters_finite(self) -> bool:
        """Linear models can diverge to inf/NaN weights; trees cannot (their leaves are counts)."""
        steps = getattr(self.model, "steps", None)
        linear = list(steps.values())[-1] if steps else self.model
        weights = getattr(linear, "weights", None)
        if weights is None:
            return True
        intercept = getattr(linear, "intercept", 0.0)
        return math.isfinite(intercept) and all(math.isfinite(w) for w in weights.values())


class SmoothedTree(RiverMember):
    """A River tree whose leaf estimates are Laplace-smoothed by the leaf's weight.

    A pure leaf of a Hoeffding tree says 0 or 1, which a proper score punishes without bound (River's
    HAT: log-loss 0.63 on Phishing and 1.05 on the Elec2 sample, worse than a coin, at accuracies of
    0.87 and 0.83). Each leaf reached by ``x`` gives ``(n q + 1) / (n + 2)`` instead of its estimate
    ``q`` (``n``: the weight the leaf has seen), and the leaves are averaged as River averages them.
    Learning is River's, untouched; with ``n`` large the probability is River's.
    """

    def predict_proba_one(self, x: dict[str, float]) -> dict[int, float]:
        from river.tree.nodes.branch import DTBranch

        values = select(x, self.features)
        *transformers, tree = self.model.steps.values()
        for transformer in transformers:
            values = transformer.transform_one(values)
        root = tree._root
        if root is None:
            return {0: 0.5, 1: 0.5}
        # HAT's traverse yields every leaf the instance reaches (River annotates it loosely).
        leaves: Any = root.traverse(values, until_leaf=True) if isinstance(root, DTBranch) else [root]
        total_p = 0.0
        for leaf in leaves:
            estimate = leaf.prediction(values, tree=tree)
            mass = sum(estimate.values())
            q = estimate.get(1, 0.0) / mass if mass > 0 else 0.5
            n = leaf.total_weight
            total_p += (n * q + 1.0) / (n + 2.0)
        p_up = total_p / len(leaves)
        return {0: 1.0 - p_up, 1: p_up}


# The input each rule member reads: where the model features lack it (a labelled dataset) the rule can
# only say 0.5, so it is left out (:func:`usable`) instead of diluting the mixture's weights.
RULE_INPUTS = {"side": "last_trade_sign", "imbalance": "book_imbalance"}


def usable(names: tuple[str, ...], features: tuple[str, ...]) -> tuple[str, ...]:
    """The members of ``names`` that can read something of ``features``: every one but a rule member
    whose input is not among them.

    >>> usable(("logreg", "side", "imbalance"), ("x1", "x2"))
    ('logreg',)
    """
    return tuple(name for name in names if name not in RULE_INPUTS or RULE_INPUTS[name] in features)


class SideRule(TradeSide):
    """The trade-side rule as a member (its own name: the reference keeps ``trade_side``)."""

    name = "side"


class ImbalanceRule(QueueImbalanceReference):
    """The queue-imbalance rule as a member (its own name: the reference keeps ``queue_imbalance``)."""

    name = "imbalance"


def make_member(name: str, seed: int = 0, device: str = "cpu", features: tuple[str, ...] = MODEL_FEATURES):
    """A fresh member by name (see :data:`MEMBER_NAMES`) reading ``features`` from each vector."""
    if name == "persistence":
        return Persistence()
    if name == "side":
        return SideRule()
    if name == "imbalance":
        return ImbalanceRule()
    if name == "hat":
        return SmoothedTree(name, river_model(name, seed), features)
    if name in ("logreg", "arf") or name.startswith("logreg@"):
        return RiverMember(name, river_model(name, seed), features)
    if name == "micro":
        # Market vectors: the microstructure features only. A labelled dataset has none of them, so
        # there it reads the dataset's own features like logreg.
        chosen = MICRO_FEATURES if set(MICRO_FEATURES) & set(features) else features
        return RiverMember(name, river_model("logreg", seed), chosen)
    if name == "mlp":
        return TorchMLP(seed=seed, device=device, features=features)
    raise ValueError(f"unknown member {name!r}; choose from persistence, {', '.join(MEMBER_NAMES)}")


def river_model(name: str, seed: int = 0):
    """The River estimator behind a River member, fresh (tests evaluate it with River's own tools)."""
    from river import compose, forest, linear_model, optim, preprocessing, tree

    if name == "logreg" or name.startswith("logreg@"):
        # logreg@<rate>: the same model with another SGD learning rate (a challenger variant).
        try:
            rate = float(name.split("@", 1)[1]) if "@" in name else 0.005
        except ValueError:
            rate = math.nan
        if not 0.0 < rate < math.inf:  # a NaN or negative rate would train to garbage silently
            raise ValueError(f"bad learning rate in member {name!r}; write e.g. logreg@0.05")
        return compose.Pipeline(preprocessing.StandardScaler(),
                                linear_model.LogisticRegression(optimizer=optim.SGD(rate)))
    if name == "hat":
        return compose.Pipeline(preprocessing.StandardScaler(), tree.HoeffdingAdaptiveTreeClassifier(seed=seed))
    if name == "arf":
        return forest.ARFClassifier(n_models=10, seed=seed)
    raise ValueError(f"{name!r} is not a River member")
