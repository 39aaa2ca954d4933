"""Ensemble members with River's API: ``predict_proba_one(x) -> {0: p, 1: p}`` and ``learn_one(x, y)``.

Label 1 means "the price is higher after the horizon", 0 "lower". ``x`` is a dict of features; members
pick their ``features`` out of it, in that order (absent features count as missing). The default is
:data:`streams.features.MODEL_FEATURES`; a labelled dataset replayed through the pipeline brings its own.

Members:

* ``persistence`` — the baseline: predicts that the last realised label repeats, with a probability
  equal to its own smoothed hit rate (so its log-loss is finite and it is calibrated).
* ``logreg`` — ``StandardScaler | LogisticRegression`` (River), SGD rate 0.005; ``logreg@0.05`` the
  same with another rate (for challenger variants).
* ``hat`` — Hoeffding Adaptive Tree (River); opt-in, about 10x the cost of logreg.
* ``arf`` — Adaptive Random Forest of 10 trees (River); opt-in, about 40x.
* ``mlp`` — a small torch MLP trained online (see :class:`TorchMLP`).

>>> m = make_member("logreg", seed=1)
>>> m.predict_proba_one({"ret_1": 0.01})
{0: 0.5, 1: 0.5}
>>> m.learn_one({"ret_1": 0.01}, 1)
>>> round(m.predict_proba_one({"ret_1": 0.01})[1], 3) > 0.5
True
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any

import numpy as np

from streams.features import MODEL_FEATURES

MEMBER_NAMES = ("logreg", "mlp", "hat", "arf")


def clip_probability(p: float, eps: float = 1e-6) -> float:
    return min(max(p, eps), 1.0 - eps)


def select(x: dict[str, float], names: tuple[str, ...]) -> dict[str, float]:
    return {name: x[name] for name in names if name in x}


class Persistence:
    """The last realised label repeats, with probability = smoothed hit rate of that rule."""

    name = "persistence"

    def __init__(self, decay: float = 0.99):
        self.decay = decay
        self.last: int | None = None
        self.hits = 1.0  # Laplace-style prior: one hit, one miss
        self.trials = 2.0

    def predict_proba_one(self, x: dict[str, float]) -> dict[int, float]:
        if self.last is None:
            return {0: 0.5, 1: 0.5}
        p_same = clip_probability(self.hits / self.trials, 0.01)
        p_up = p_same if self.last == 1 else 1.0 - p_same
        return {0: 1.0 - p_up, 1: p_up}

    def learn_one(self, x: dict[str, float], y: int) -> None:
        if self.last is not None:
            self.hits = self.decay * self.hits + (1.0 if y == self.last else 0.0)
            self.trials = self.decay * self.trials + 1.0
        self.last = y


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

    def learn_one(self, x: dict[str, float], y: int) -> None:
        self.model.learn_one(select(x, self.features), y)

    def parameters_finite(self) -> bool:
        """Linear models can diverge to inf/NaN weights; trees cannot (their leaves are counts)."""
        steps = getattr(self.model, "steps", None)
        linear = list(steps.values())[-1] if steps else self.model
        weights = getattr(linear, "weights", None)
        if weights is None:
            return True
        intercept = getattr(linear, "intercept", 0.0)
        return math.isfinite(intercept) and all(math.isfinite(w) for w in weights.values())


class TorchMLP:
    """A small MLP trained online.

    * Inputs: the model features in a fixed order, standardised with running mean/variance, clipped
      to [-5, 5]; a missing feature is 0 after standardisation (its running mean).
    * Training: every ``train_every`` labels, one Adam step on a batch of the newest labels plus
      samples from an experience-replay buffer that mixes recent samples and the highest-loss ones.
    * Gradient norm clipped to ``clip``. Learning rate adapts to the loss trend: halved when the
      short-term loss has not improved on the long-term one for ``patience`` steps (plateau), doubled
      back towards the initial rate when the short-term loss jumps above 1.5x the long-term (a change).
    * CPU by default with one intra-op thread (2-core machines: Kafka I/O keeps the other); CUDA when
      ``device="cuda"`` or ``"auto"`` finds one.
    * Inference on one vector runs in numpy on a copy of the weights taken after each training step:
      for a 22-32-16-1 network a torch call costs ~100 µs of dispatch, the matrix products ~5 µs.
    """

    name = "mlp"

    def __init__(self, seed: int = 0, hidden: int = 32, lr: float = 3e-3, train_every: int = 16,
                 batch_size: int = 64, replay_size: int = 512, hard_size: int = 64, clip: float = 1.0,
                 patience: int = 50, device: str = "cpu", features: tuple[str, ...] = MODEL_FEATURES):
        import torch

        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.features = features
        self.hidden = hidden
        self.net = self._network()
        torch.random.set_rng_state(generator_state)
        self.initial_lr = lr
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
        self.train_every, self.batch_size, self.clip, self.patience = train_every, batch_size, clip, patience
        self.rng = random.Random(seed)
        self.n = 0
        n_in = len(features)
        self.mean = [0.0] * n_in
        self.m2 = [0.0] * n_in
        self.pending: list[tuple[list[float], int]] = []
        self.recent: deque[tuple[list[float], int]] = deque(maxlen=replay_size)
        self.hard: list[tuple[float, list[float], int]] = []
        self.hard_size = hard_size
        self.short_loss = self.long_loss = None
        self.best_short = math.inf
        self.since_improvement = 0
        self.steps = 0
        self.weights: tuple = ()

    def _network(self):
        import torch

        n_in, hidden = len(self.features), self.hidden
        return torch.nn.Sequential(
            torch.nn.Linear(n_in, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, hidden // 2), torch.nn.Tanh(),
            torch.nn.Linear(hidden // 2, 1),
        ).to(self.device)

    def __getstate__(self) -> dict[str, Any]:
        """Data only: weights and optimizer state as numpy arrays, no torch objects (a snapshot is
        read through an allowlist that admits no torch callable; see streams.snapshots)."""
        state = self.__dict__.copy()
        state["net"] = {name: t.detach().cpu().numpy() for name, t in self.net.state_dict().items()}
        optimizer = self.optimizer.state_dict()
        state["optimizer"] = {
            "state": {i: {k: v.detach().cpu().numpy() if hasattr(v, "detach") else v for k, v in slot.items()}
                      for i, slot in optimizer["state"].items()},
            "param_groups": optimizer["param_groups"],
        }
        state["device"] = str(self.device)
        del state["loss_fn"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import torch

        net, optimizer = state.pop("net"), state.pop("optimizer")
        self.__dict__.update(state)
        self.device = torch.device(state["device"])
        self.net = self._network()
        self.net.load_state_dict({name: torch.from_numpy(array.copy()) for name, array in net.items()})
        self.net.eval()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.initial_lr)
        self.optimizer.load_state_dict({
            "state": {i: {k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v for k, v in slot.items()}
                      for i, slot in optimizer["state"].items()},
            "param_groups": optimizer["param_groups"],
        })
        self.loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")

    def _vector(self, x: dict[str, float]) -> list[float]:
        out = []
        n = self.n
        for i, name in enumerate(self.features):
            value = x.get(name)
            if value is None or n < 2:
                out.append(0.0)
                continue
            sd = math.sqrt(self.m2[i] / (n - 1)) if self.m2[i] > 0 else 1.0
            z = (value - self.mean[i]) / sd
            out.append(-5.0 if z < -5.0 else 5.0 if z > 5.0 else z)
        return out

    def _update_scaler(self, x: dict[str, float]) -> None:
        self.n += 1
        n = self.n
        for i, name in enumerate(self.features):
            value = x.get(name)
            if value is None:
                value = self.mean[i]
            delta = value - self.mean[i]
            self.mean[i] += delta / n
            self.m2[i] += delta * (value - self.mean[i])

    def predict_proba_one(self, x: dict[str, float]) -> dict[int, float]:
        if self.steps == 0:
            return {0: 0.5, 1: 0.5}
        w1, b1, w2, b2, w3, b3 = self.weights
        h = np.tanh(w1 @ np.asarray(self._vector(x)) + b1)
        h = np.tanh(w2 @ h + b2)
        logit = float(w3 @ h + b3)
        p_up = 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0
        return {0: 1.0 - p_up, 1: p_up}

    def _copy_weights(self) -> None:
        layers = [m for m in self.net if hasattr(m, "weight")]
        w1, b1, w2, b2, w3, b3 = (t.detach().cpu().double().numpy().copy()
                                  for layer in layers for t in (layer.weight, layer.bias))
        self.weights = (w1, b1, w2, b2, w3[0], float(b3[0]))

    def learn_one(self, x: dict[str, float], y: int) -> None:
        vector = self._vector(x)
        self._update_scaler(x)
        self.pending.append((vector, y))
        if len(self.pending) >= self.train_every:
            self._train()

    def _train(self) -> None:
        import torch
        batch = list(self.pending)
        replay = list(self.recent)
        extra = self.batch_size - len(batch)
        if replay and extra > 0:
            hard = [(v, y) for _, v, y in self.hard]
            n_hard = min(len(hard), extra // 2)
            batch += self.rng.sample(hard, n_hard) if n_hard else []
            n_recent = min(len(replay), extra - n_hard)
            batch += self.rng.sample(replay, n_recent)
        self.recent.extend(self.pending)
        self.pending.clear()
        inputs = torch.tensor([v for v, _ in batch], dtype=torch.float32, device=self.device)
        targets = torch.tensor([[float(y)] for _, y in batch], dtype=torch.float32, device=self.device)
        self.net.train()
        losses = self.loss_fn(self.net(inputs), targets)
        loss = losses.mean()
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        self.optimizer.step()
        self.net.eval()
        self.steps += 1
        self._copy_weights()
        per_sample = losses.detach().cpu().flatten().tolist()
        for (vector, y), value in zip(batch, per_sample, strict=True):
            self.hard.append((value, vector, y))
        self.hard.sort(key=lambda item: -item[0])
        del self.hard[self.hard_size:]
        self._adapt_learning_rate(float(loss.detach()))

    def _adapt_learning_rate(self, loss: float) -> None:
        if self.short_loss is None:
            self.short_loss = self.long_loss = loss
            return
        self.short_loss += 0.1 * (loss - self.short_loss)
        self.long_loss += 0.01 * (loss - self.long_loss)
        lr = self.optimizer.param_groups[0]["lr"]
        if self.short_loss > 1.5 * self.long_loss:
            lr = min(lr * 2.0, self.initial_lr)
            self.best_short, self.since_improvement = self.short_loss, 0
        elif self.short_loss < self.best_short - 1e-4:
            self.best_short, self.since_improvement = self.short_loss, 0
        else:
            self.since_improvement += 1
            if self.since_improvement >= self.patience:
                lr = max(lr * 0.5, self.initial_lr / 64)
                self.since_improvement = 0
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def parameters_finite(self) -> bool:
        return all(np.isfinite(w).all() for w in self.weights) if self.weights else True

    @property
    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def raise_learning_rate(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.initial_lr


def make_member(name: str, seed: int = 0, device: str = "cpu", features: tuple[str, ...] = MODEL_FEATURES):
    """A fresh member by name (see :data:`MEMBER_NAMES`) reading ``features`` from each vector."""
    if name == "persistence":
        return Persistence()
    if name in ("logreg", "hat", "arf") or name.startswith("logreg@"):
        return RiverMember(name, river_model(name, seed), features)
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
            raise ValueError(f"bad learning rate in member {name!r}; write e.g. logreg@0.05") from None
        return compose.Pipeline(preprocessing.StandardScaler(),
                                linear_model.LogisticRegression(optimizer=optim.SGD(rate)))
    if name == "hat":
        return compose.Pipeline(preprocessing.StandardScaler(), tree.HoeffdingAdaptiveTreeClassifier(seed=seed))
    if name == "arf":
        return forest.ARFClassifier(n_models=10, seed=seed)
    raise ValueError(f"{name!r} is not a River member")
