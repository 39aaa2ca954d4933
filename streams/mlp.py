"""A small torch MLP trained online, as an ensemble member (River's API: ``predict_proba_one``,
``learn_one``).

* Inputs: the model features in a fixed order, standardised with running means and variances (per
  feature, over the values seen; a missing value is the running mean, i.e. 0 after standardising),
  clipped to [-5, 5]. Samples are kept raw in a replay buffer and standardised when trained on, so a
  scale that settles late does not leave stale inputs behind.
* Training: every ``train_every`` (8) labels one Adam step (rate 6e-3) on a batch of those newest
  labels plus uniform samples from the replay buffer (the last ``replay_size`` labels), 64 in all: an
  online network sees each label about ``batch_size / train_every`` = 8 times. One step on 16 new and
  48 replayed labels per 16 labels (the first version) left it below the majority-class rate on
  tabular streams; these defaults, measured with a delay of 5 against River's scaled logistic
  regression (accuracy / log-loss): Phishing 0.896 / 0.271 vs 0.884 / 0.384, the Elec2 sample
  0.805 / 0.434 vs 0.807 / 0.457, Bananas 0.830 / 0.367 vs 0.541 / 0.686, River's SEA 0.989 vs
  0.961, Hyperplane 0.933 vs 0.921, Agrawal 0.883 vs 0.669. A torch step costs ~2 ms on these
  2-core machines whatever the batch size, hence a step per 8 labels rather than per label.
* A sample weight (``learn_one(x, y, w)``) scales the sample's loss within its batch (a weighted
  mean): the forecasts of one price move share one sample's weight (streams.learning). With every
  weight 1 the step is the plain mean's, bit for bit.
* Gradient norm clipped to ``clip``. The learning rate follows the loss trend: halved when the
  short-term training loss has not improved for ``patience`` steps, back to the initial rate when the
  short-term loss jumps above 1.5x the long-term one (a change; drift response does the same).
* CPU by default with one intra-op thread (2-core machines: Kafka I/O keeps the other); CUDA when
  ``device="cuda"`` or ``"auto"`` finds one.
* Inference on one vector runs in numpy on a copy of the weights taken after each training step: for
  a network this size a torch call costs ~100 µs of dispatch, the matrix products a few µs.
* Pickled as data only (weights and optimizer state as numpy arrays): snapshots are read through an
  allowlist that admits no torch callable (see :mod:`streams.snapshots`).

>>> import random
>>> rng = random.Random(0)
>>> mlp = TorchMLP(seed=1, features=("a", "b"))
>>> for _ in range(600):
...     a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
...     mlp.learn_one({"a": a, "b": b}, int(a * b > 0))      # XOR-like: no linear model sees it
>>> round(mlp.predict_proba_one({"a": 0.7, "b": 0.7})[1], 1) > 0.7, mlp.predict_proba_one({"a": 0.7, "b": -0.7})[1] < 0.3
(True, True)
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from streams.features import MODEL_FEATURES

Z_CLIP = 5.0


class TorchMLP:
    name = "mlp"

    def __init__(self, seed: int = 0, hidden: int = 32, lr: float = 6e-3, train_every: int = 8,
                 batch_size: int = 64, replay_size: int = 1024, clip: float = 1.0, patience: int = 200,
                 device: str = "cpu", features: tuple[str, ...] = MODEL_FEATURES):
        import torch

        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if not 1 <= train_every <= batch_size:
            raise ValueError("train_every must be between 1 and batch_size")
        self.device = torch.device(device)
        self.features = tuple(features)
        self.hidden = hidden
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.net = self._network()
        torch.random.set_rng_state(generator_state)
        self.initial_lr = lr
        self.optimizer = self._adam(lr)
        self.train_every, self.batch_size, self.clip, self.patience = train_every, batch_size, clip, patience
        self.rng = random.Random(seed)
        n_in = len(self.features)
        self.count = np.zeros(n_in)
        self.mean = np.zeros(n_in)
        self.m2 = np.zeros(n_in)
        self._sd: np.ndarray | None = None
        self.buffer_x = np.full((replay_size, n_in), np.nan)
        self.buffer_y = np.zeros(replay_size)
        self.buffer_w = np.ones(replay_size)  # sample weights (streams.learning: one price move, one sample)
        self.filled = self.position = self.new = 0
        self.short_loss: float | None = None
        self.long_loss: float | None = None
        self.best_short = math.inf
        self.since_improvement = 0
        self.steps = 0
        self.weights: tuple = ()

    def _adam(self, lr: float) -> Adam:
        self._parameters = list(self.net.parameters())
        return Adam(self._parameters, lr=lr)

    def _clip_gradients(self) -> None:
        """``torch.nn.utils.clip_grad_norm_(parameters, clip)``: the same operations without its per-call
        grouping of tensors by device (the parameters share one device; ~0.2 ms of a ~2 ms step)."""
        import torch

        grads = [p.grad for p in self._parameters if p.grad is not None]
        if not grads:
            return
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
        torch._foreach_mul_(grads, torch.clamp(self.clip / (total + 1e-6), max=1.0))

    def _network(self):
        import torch

        n_in, hidden = len(self.features), self.hidden
        return torch.nn.Sequential(
            torch.nn.Linear(n_in, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, hidden // 2), torch.nn.Tanh(),
            torch.nn.Linear(hidden // 2, 1),
        ).to(self.device)

    def _row(self, x: dict[str, float]) -> np.ndarray:
        return np.array([x.get(name, math.nan) for name in self.features], dtype=float)

    def _standardise(self, rows: np.ndarray) -> np.ndarray:
        # The scale changes only in learn_one: computed once per step, not per prediction.
        sd = self.__dict__.get("_sd")  # absent in a restored checkpoint
        if sd is None:
            sd = np.sqrt(np.where(self.count > 1, self.m2 / np.maximum(self.count - 1, 1), 1.0))
            sd = self._sd = np.where(sd > 0, sd, 1.0)
        # Clipping maps +-inf to the bound, as nan_to_num then clip did; NaN (a missing input) is 0.
        # maximum then minimum in place is np.clip's result bit for bit (NaN kept), at half its cost
        # on one row (np.clip's argument handling is most of a 20-value call).
        z = (rows - self.mean) / sd
        np.maximum(z, -Z_CLIP, out=z)
        np.minimum(z, Z_CLIP, out=z)
        z[np.isnan(z)] = 0.0
        return z

    def predict_proba_one(self, x: dict[str, float]) -> dict[int, float]:
        if self.steps == 0:
            return {0: 0.5, 1: 0.5}
        w1, b1, w2, b2, w3, b3 = self.weights
        h = np.tanh(w1 @ self._standardise(self._row(x)) + b1)
        h = np.tanh(w2 @ h + b2)
        logit = float(w3 @ h + b3)
        p_up = 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0
        return {0: 1.0 - p_up, 1: p_up}

    def learn_one(self, x: dict[str, float], y: int, w: float = 1.0) -> None:
        row = self._row(x)
        seen = ~np.isnan(row)
        self.count += seen
        self._sd = None
        with np.errstate(over="ignore", invalid="ignore"):  # an absurd input: the guard undoes the step
            if seen.all():  # the usual row: the masked update below without its masks, the same bits
                delta = row - self.mean
                self.mean += delta / self.count
                self.m2 += delta * (row - self.mean)
            else:
                delta = np.where(seen, row - self.mean, 0.0)
                self.mean += np.where(seen, delta / np.maximum(self.count, 1), 0.0)
                self.m2 += np.where(seen, delta * (row - self.mean), 0.0)
        self.buffer_x[self.position] = row
        self.buffer_y[self.position] = y
        self.buffer_w[self.position] = w
        self.position = (self.position + 1) % self.buffer_y.shape[0]
        self.filled = min(self.filled + 1, self.buffer_y.shape[0])
        self.new += 1
        if self.new >= self.train_every:
            self._train()

    def _batch(self):
        """The next training batch as tensors: the labels since the last step plus uniform samples of
        the replay buffer, ``batch_size`` in all, standardised with the current scale."""
        import torch

        size = self.buffer_y.shape[0]
        newest = [(self.position - 1 - i) % size for i in range(self.new)]
        extra = min(self.batch_size - self.new, self.filled - self.new)
        older = [(self.position - 1 - self.new - i) % size for i in self.rng.sample(range(self.filled - self.new), extra)]
        index = newest + older
        self.new = 0
        inputs = torch.as_tensor(self._standardise(self.buffer_x[index]), dtype=torch.float32, device=self.device)
        weights = self.buffer_w[index, None]
        weights = weights if (weights != 1.0).any() else None
        return (inputs, torch.as_tensor(self.buffer_y[index, None], dtype=torch.float32, device=self.device),
                None if weights is None else torch.as_tensor(weights, dtype=torch.float32, device=self.device))

    def _train(self) -> None:
        import torch

        inputs, targets, weights = self._batch()
        # No dropout or batch norm: training and evaluation modes are the same network, and the
        # layers are applied directly (what Sequential, Linear and Tanh call, without their per-module
        # dispatch: ~0.1 ms a step).
        w1, b1, w2, b2, w3, b3 = self._parameters
        linear = torch.nn.functional.linear
        logits = linear(torch.tanh(linear(torch.tanh(linear(inputs, w1, b1)), w2, b2)), w3, b3)
        if weights is None:  # every sample weighs 1: the plain mean, bit for bit as before
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        else:  # a weighted mean: a burst of forecasts of one price move counts as one sample
            losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            loss = (losses * weights).sum() / weights.sum()
        self.optimizer.zero_grad()
        loss.backward()
        self._clip_gradients()
        self.optimizer.step()
        self._stepped(float(loss.detach()))

    def _stepped(self, loss: float) -> None:
        self.steps += 1
        self._copy_weights()
        self._adapt_learning_rate(loss)

    def _copy_weights(self) -> None:
        layers = [m for m in self.net if hasattr(m, "weight")]
        w1, b1, w2, b2, w3, b3 = (t.detach().cpu().double().numpy()
                                  for layer in layers for t in (layer.weight, layer.bias))
        self.weights = (w1, b1, w2, b2, w3[0], float(b3[0]))

    def _adapt_learning_rate(self, loss: float) -> None:
        if self.short_loss is None or self.long_loss is None:
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
                lr = max(lr * 0.5, self.initial_lr / 16)
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

    def __getstate__(self) -> dict[str, Any]:
        """Data only: weights and optimizer state as numpy arrays, no torch objects."""
        state = self.__dict__.copy()
        state["net"] = {name: t.detach().cpu().numpy() for name, t in self.net.state_dict().items()}
        optimizer = self.optimizer.state_dict()
        state["optimizer"] = {
            "state": {i: {k: v.detach().cpu().numpy() if hasattr(v, "detach") else v for k, v in slot.items()}
                      for i, slot in optimizer["state"].items()},
            "param_groups": optimizer["param_groups"],
        }
        state["device"] = str(self.device)
        state.pop("_parameters", None)
        state.pop("_sd", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import torch

        net, optimizer = state.pop("net"), state.pop("optimizer")
        self.__dict__.update(state)
        if "buffer_w" not in state:  # a checkpoint written before sample weights: every weight 1
            self.buffer_w = np.ones(self.buffer_y.shape[0])
        self.device = torch.device(state["device"])
        self.net = self._network()
        self.net.load_state_dict({name: torch.from_numpy(array.copy()) for name, array in net.items()})
        self.net.eval()
        self.optimizer = self._adam(self.initial_lr)
        self.optimizer.load_state_dict({
            "state": {i: {k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v for k, v in slot.items()}
                      for i, slot in optimizer["state"].items()},
            "param_groups": optimizer["param_groups"],
        })


class Adam:
    """Adam (Kingma and Ba 2015) for the MLP's few tensors: the operations of ``torch.optim.Adam``'s
    per-tensor loop with its defaults (betas 0.9 / 0.999, eps 1e-8, no weight decay, no AMSGrad), so
    the weights are the same bit for bit (``tests/unit/test_learning.py`` trains both side by side),
    and its state dictionary has torch's layout, so checkpoints read either way.

    Why not ``torch.optim.Adam`` itself: its first use in a process imports ``torch._dynamo`` (about
    2 s here, before a worker's first prediction and inside every backtest), and every step goes
    through its compile guards (about a quarter of the MLP's ~2 ms step on these machines).
    """

    def __init__(self, params: list, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if not lr > 0.0:
            raise ValueError("the learning rate must be positive")
        self.params = list(params)
        # torch's keys and defaults, so that torch.optim.Adam can read a state this class saved.
        self.param_groups: list[dict[str, Any]] = [{
            "lr": lr, "betas": betas, "eps": eps, "weight_decay": 0, "amsgrad": False, "maximize": False,
            "foreach": None, "capturable": False, "differentiable": False, "fused": None,
            "decoupled_weight_decay": False, "params": list(range(len(self.params)))}]
        self.state: dict[int, dict[str, Any]] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        group = self.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        params = self.params
        if (len(self.state) == len(params) and all(p.grad is not None for p in params)
                and params[0].device.type == "cpu"):
            self._step_each(params, lr, beta1, beta2, eps)
            return
        with torch.no_grad():
            for i, param in enumerate(self.params):
                grad = param.grad
                if grad is None:
                    continue
                state = self.state.get(i)
                if state is None:
                    state = self.state[i] = {"step": torch.tensor(0.0, dtype=torch.float32),
                                             "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                                             "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format)}
                exp_avg, exp_avg_sq, step_t = state["exp_avg"], state["exp_avg_sq"], state["step"]
                step_t += 1
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = step_t.item()
                bias_correction1 = 1 - beta1 ** step
                bias_correction2 = 1 - beta2 ** step
                step_size = lr / bias_correction1
                denom = (exp_avg_sq.sqrt() / bias_correction2 ** 0.5).add_(eps)
                param.addcdiv_(exp_avg, denom, value=-step_size)

    def _step_each(self, params: list, lr: float, beta1: float, beta2: float, eps: float) -> None:
        """The loop above as one call per operation over all tensors (``torch._foreach_*``): on the CPU
        these apply the per-tensor operation to each tensor in turn, so the weights are the same bit
        for bit, without the Python dispatch of ~50 calls a step (~80 us of a ~0.9 ms step here). Every
        tensor has stepped as often as the others (they are created and stepped together)."""
        import torch

        states = [self.state[i] for i in range(len(params))]
        grads = [p.grad for p in params]
        exp_avgs = [state["exp_avg"] for state in states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in states]
        steps = [state["step"] for state in states]
        with torch.no_grad():
            torch._foreach_add_(steps, 1)
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
            step = steps[0].item()
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            denoms = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denoms, bias_correction2 ** 0.5)
            torch._foreach_add_(denoms, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denoms, value=-(lr / bias_correction1))

    def state_dict(self) -> dict[str, Any]:
        return {"state": {i: dict(slot) for i, slot in self.state.items()},
                "param_groups": [dict(group) for group in self.param_groups]}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """A state dictionary of this class or of ``torch.optim.Adam`` over the same parameters."""
        import torch

        groups = saved["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError("the saved optimizer state is for other parameters")
        self.param_groups = [{**self.param_groups[0], "lr": groups[0]["lr"], "betas": tuple(groups[0]["betas"]),
                              "eps": groups[0]["eps"]}]
        self.state = {}
        for i, slot in saved["state"].items():
            param = self.params[int(i)]
            self.state[int(i)] = {"step": slot["step"].to(dtype=torch.float32),
                                  "exp_avg": slot["exp_avg"].to(dtype=param.dtype, device=param.device),
                                  "exp_avg_sq": slot["exp_avg_sq"].to(dtype=param.dtype, device=param.device)}
