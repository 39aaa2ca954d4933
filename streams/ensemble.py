"""The ensemble: a Bayesian mixture of experts with a no-skill floor and a stated guarantee against
the best expert in hindsight on log-loss, exact under delayed outcomes, tracking by fixed share.

Experts (all probabilities clipped to ``[CLIP, 1 - CLIP]``; the clipped expert is the comparator):

* the two no-skill references: the constant 0.5, and the running prior (the smoothed frequency of
  "up" among the outcomes matured so far, with the same delay as the members, outcomes that mature
  together counting once; streams.references);
* every member, raw and recalibrated online (temperature scaling, :mod:`streams.calibration`);
* ``fast``: a mixture of the experts above with one weight vector, updated by every outcome as it
  matures. It learns from all outcomes (so it finds a good member quickly) but, its weights being
  ``H`` outcomes late, it has no guarantee of its own; to the mixture below it is one more expert.
  The ``k`` outcomes that mature at one vector (every forecast that waited for the next mid change,
  when it comes) update it by the geometric mean of their likelihoods (Bayes' rule tempered by
  ``1 / k`` each): one price observation resolved them all, so they are one piece of evidence, as
  they are for the running prior and the calibrators (each Newton step weighted ``1 / k``). One
  outcome a vector (a horizon in ticks) is plain Bayes' rule (measured in docs/STATUS.md).
  A market outcome ``lag`` vectors after its forecast also divides the rate by ``sqrt(lag)``: the
  delayed-feedback scaling of an exponentially weighted forecaster's rate (its regret grows as
  ``sqrt((1 + d) T ln N)`` with delay ``d``). Untempered, the fast mixture chased whichever expert
  led over the last overlapping outcomes: one second ahead at book tickers (~150 forecasts
  outstanding) it scored 0.584 where its best expert, the micro member, scored 0.472 (BTCUSDT).
  Labelled datasets (outcomes that do not overlap) are not tempered.

Aggregation (Vovk's aggregating algorithm for log-loss at learning rate 1, i.e. Bayes' rule): the
forecast is ``p = sum_i w_i p_i``; after the outcome ``y``, ``w_i <- w_i p_i(y) / sum_j w_j p_j(y)``,
then fixed share toward the initial weights, ``w <- (1 - share) w + share * pi``. For one mixture that
sees each outcome before its next forecast (Herbster and Warmuth 1998, fixed share to a prior), for
any sequence of experts ``i_1..i_T`` with ``k`` switches, cumulative log-loss

    L_mix <= L_{i_1..i_T} - ln pi_{i_1} + sum over switches of -ln(share * pi_{new}) - (T - 1 - k) ln(1 - share)

so against one expert ``i`` throughout: ``L_mix <= L_i - ln pi_i + T share`` (``-ln(1-s) ~ s``).

Delay. Outcomes arrive ``H`` forecasts late, so one mixture cannot see them in time. Following
Joulani, Gyorgy and Szepesvari (2013), a forecast is served by a free *slot* (a mixture whose own last
forecast has matured), a new slot being opened when all are waiting; each slot is a non-delayed
mixture on its own forecasts. With ``K`` slots (``K = H`` for a horizon of ``H`` vectors; the most
forecasts ever outstanding at once for a horizon in seconds), summing the bound over the slots:

    L_ensemble <= L_i + K (-ln pi_i) + T share        for every expert i, the fast mixture included.

Initial weights ``pi`` (per slot) on market data (:data:`START` ``markets``): constant 0.6, prior
0.3, fast 0.08, the member experts 0.02 together. They follow from the guarantees wanted, not from a
fit. The constant: for a day of one-minute klines (1,430 outcomes at ``H = 5``) to cost at most 0.002
nats per outcome against the constant 0.5, ``5 (-ln pi_c) / 1430 + 1e-4 <= 0.002`` needs ``pi_c >=
0.581``; with 0.6 the ensemble loses at most ``0.51 K`` nats plus 1e-4 per forecast against it. The
route to skill: a member that has any is found through the fast mixture, and where members have
skill there are many outcomes (tens of thousands of book tickers a day); 0.08 bounds the loss
against the fast mixture by ``2.5 K`` nats (12.6 at ``K = 5``: 0.0013 per outcome over 10,000). The
running prior gets the rest of the no-skill mass, 0.3 (``1.2 K`` against it): on a trending day it is
the better no-skill reference, and every nat of prior weight it lacks is paid ``K`` times there. The
ensemble starts at no skill and moves weight to a member only as its outcomes earn it.
:attr:`Ensemble.regret_bound` (the bound against the constant for the slots opened so far) is
published with every performance record.

The skill gate (:mod:`streams.skill_gate`, market streams only, ``LIVELEARN_SKILL_GATE_ALPHA``,
0.01 by default): until the experts have beaten the constant by a test that holds its level at every
moment (per-slot likelihood-ratio martingales, Ville's inequality), the published forecast is exactly
0.5 and the bound is 0; on a stream without skill it stays so with probability at least ``1 -
alpha``. The mixture learns behind it all the while. When it opens, the stream has shown a learnable
label, so every slot restarts from the labelled datasets' weights (below), and the bound counts from
there: ``K (-ln 0.28)`` against the constant. Measured (``bench/skill.py``, one run each, without ->
with): the four kline days pooled 0.0010 nats an outcome worse than the constant -> equal to it; the
next mid change 0.5459 / 0.5718 -> 0.5453 / 0.5712; one second ahead at book tickers 0.5045 / 0.5894
-> 0.5530 / 0.6138 (the gate opens two minutes into the six-minute captures); days made to trend
(where the running prior beats the constant) now score the constant's loss. docs/STATUS.md has the
rest.

A labelled dataset (vectors of any other feature set, ``livelearn replay-dataset``) is brought because
its label is expected to be learnable, so there the fast mixture starts with the constant's 0.6
(``datasets``: constant 0.28, prior 0.06, fast 0.6, members 0.06): against the constant the ensemble
may lose ``1.27 K`` nats, against the fast mixture ``0.51 K``. Measured in process (one run, the same
members): Phishing's log-loss over its best member at label delays 3 and 5 went from +0.0048 and
+0.0072 with the market weights then (0.6, 0.06, 0.28) to +0.0033 and +0.0045; the Elec2 sample,
already better than its best member, by 0.001-0.002 more. ``LIVELEARN_ENSEMBLE_START`` picks one for
every symbol instead.

>>> mix = Ensemble(("a",))
>>> out = mix.forecast({"a": 0.9})
>>> round(out.p_up, 4), sorted(out.weights)
(0.5336, ['a', 'a~cal', 'constant', 'prior'])
>>> for _ in range(200):
...     mix.learn(out, 1)
...     out = mix.forecast({"a": 0.9})
>>> out.p_up > 0.85
True
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

from streams.calibration import PlattScaler
from streams.guard import GuardedMember, learn_weighted
from streams.references import RunningPrior
from streams.skill_gate import SkillGate

CLIP = 1e-4
# Temperature scaling only (Platt without the bias): a recalibrated member keeps its raw decision, so
# its accuracy is its member's; the running prior corrects the base rate.
CALIBRATION_BIAS = False
FAST = "fast"
# The fast mixture's initial weights: 0.2 on no skill (78% of it on the constant), the rest on the
# member experts; its fixed share is the slots'.
FAST_FLOOR = 0.2
CONSTANT_SHARE = 0.78
FAST_SHARE = 1e-4
NO_SKILL = ("constant", "prior")
# Initial weights (constant, prior, fast) by what is forecast; the member experts share the rest, 0.06.
START: dict[str, tuple[float, float, float]] = {"markets": (0.6, 0.3, 0.08), "datasets": (0.28, 0.06, 0.6)}


def clip(p: float) -> float:
    return CLIP if p < CLIP else 1.0 - CLIP if p > 1.0 - CLIP else p


@dataclass
class Forecast:
    """One ensemble forecast: its probability, every expert's, the weights used and the slot that
    serves it (learning needs exactly these)."""

    p_up: float
    experts: dict[str, float]
    weights: dict[str, float]
    slot: int
    confidence: float = 0.0
    member_probabilities: dict[str, float] = field(default_factory=dict)
    skill_shown: bool = True  # False: the skill gate published 0.5 instead of p_mixture


class _Slot:
    __slots__ = ("weights", "busy")

    def __init__(self, weights: list[float]):
        self.weights = list(weights)
        self.busy = False


def bayes_update(weights: list[float], probabilities: list[float], y: int, share: float,
                 initial: list[float], power: float = 1.0) -> list[float]:
    """Bayes' rule on the outcome ``y`` (each likelihood raised to ``power``), then fixed share toward
    ``initial``."""
    if power == 1.0:
        posterior = [w * (p if y == 1 else 1.0 - p) for w, p in zip(weights, probabilities, strict=True)]
    else:
        posterior = [w * (p if y == 1 else 1.0 - p) ** power for w, p in zip(weights, probabilities, strict=True)]
    total = sum(posterior)
    return [(1.0 - share) * w / total + share * w0 for w, w0 in zip(posterior, initial, strict=True)]


class Ensemble:
    """Members' probabilities in, the mixture forecast out (see the module docstring)."""

    def __init__(self, members: tuple[str, ...], constant: float = START["markets"][0],
                 prior: float = START["markets"][1], fast: float = START["markets"][2], share: float = 1e-4,
                 calibrate: bool = True, gate_alpha: float | None = None):
        if not (0.0 < constant and 0.0 < prior and 0.0 <= fast and constant + prior + fast < 1.0):
            raise ValueError("initial weights must be positive and leave room for the members")
        if not 0.0 <= share < 1.0:
            raise ValueError("share must be in [0, 1)")
        self.members = tuple(members)
        self.calibrate = calibrate
        self.calibrators = {name: PlattScaler(bias=CALIBRATION_BIAS) for name in self.members} if calibrate else {}
        member_experts = [e for name in self.members for e in ((name, f"{name}~cal") if calibrate else (name,))]
        self.base = (*NO_SKILL, *member_experts)
        self.names = (*self.base, FAST)
        fast_each = (1.0 - FAST_FLOOR) / len(member_experts) if member_experts else 0.0
        self.initial = self._initial(constant, prior, fast, len(member_experts))
        self.fast_initial = ([FAST_FLOOR * CONSTANT_SHARE, FAST_FLOOR * (1.0 - CONSTANT_SHARE)]
                             + [fast_each] * len(member_experts))
        self.fast_weights = list(self.fast_initial)
        self.share = share
        self.prior = RunningPrior()
        self.slots: list[_Slot] = []
        self.free: list[int] = []  # heap of the free slots' numbers
        self.outstanding = 0
        self.last_freed: int | None = None
        # Without members there is nothing to show skill: no gate.
        self.gate = SkillGate(gate_alpha) if gate_alpha and member_experts else None

    @staticmethod
    def _initial(constant: float, prior: float, fast: float, member_experts: int) -> list[float]:
        if not member_experts:  # no members: the two references alone
            return [constant / (constant + prior), prior / (constant + prior), 0.0]
        each = (1.0 - constant - prior - fast) / member_experts
        return [constant, prior] + [each] * member_experts + [fast]

    @property
    def skill_shown(self) -> bool:
        """Whether the forecasts are the mixture's (no gate, or the gate open) rather than 0.5."""
        gate = self.__dict__.get("gate")  # absent in an older checkpoint: published as before
        return gate is None or gate.open

    def _free_slot(self) -> int:
        """The lowest-numbered free slot (a new one when all wait)."""
        free = self.free
        if free:
            return free[0]
        self.slots.append(_Slot(self.initial))
        return len(self.slots) - 1

    def _look_slot(self) -> _Slot:
        """The weights a look uses: the slot the next forecast would take or, all waiting, the one freed
        last (the mixture as its newest outcome left it). A look opens no slot: it did once, and every
        look while all slots waited (the prediction channel re-scores hundreds of inputs) left one more
        slot that no forecast used, growing the published bound and the cost of :meth:`weights`, and
        re-scoring with the initial weights instead of the learned ones."""
        if self.free:
            return self.slots[self.free[0]]
        last = self.__dict__.get("last_freed")  # absent in an older checkpoint
        if last is not None:
            return self.slots[last]
        return _Slot(self.initial)  # nothing learned yet: every slot holds the initial weights

    def expert_probabilities(self, member_probabilities: dict[str, float]) -> dict[str, float]:
        experts = {"constant": 0.5, "prior": clip(self.prior.p_up)}
        for name in self.members:
            p = clip(member_probabilities.get(name, 0.5))
            experts[name] = p
            if self.calibrate:
                experts[f"{name}~cal"] = clip(self.calibrators[name].predict(p))
        experts[FAST] = clip(sum(w * experts[name] for w, name in zip(self.fast_weights, self.base, strict=True)))
        return experts

    def forecast(self, member_probabilities: dict[str, float], reserve: bool = True) -> Forecast:
        """The mixture's forecast; ``reserve`` takes a slot until :meth:`learn` or :meth:`release`
        (a side-effect-free look, e.g. to re-score inputs, passes False). ``weights`` are the
        effective weights of the base experts (the fast mixture's share spread over its own)."""
        experts = self.expert_probabilities(member_probabilities)
        if reserve:
            index = self._free_slot()
            slot = self.slots[index]
            slot.busy = True
            self.outstanding += 1
            if self.free and self.free[0] == index:
                heapq.heappop(self.free)
        else:
            slot = self._look_slot()
        p = sum(w * experts[name] for w, name in zip(slot.weights, self.names, strict=True))
        through_fast = slot.weights[-1]
        weights = {name: w + through_fast * f
                   for name, w, f in zip(self.base, slot.weights, self.fast_weights, strict=False)}
        spread = sum(w * abs(experts[name] - p) for name, w in weights.items())
        shown = self.skill_shown
        return Forecast(p if shown else 0.5, experts, weights, index if reserve else -1,
                        max(0.0, min(1.0, 1.0 - 2.0 * spread)), dict(member_probabilities), shown)

    def learn(self, forecast: Forecast, y: int, weight: float = 1.0, lag: int = 1) -> None:
        """The outcome of a forecast: its slot's weights follow Bayes' rule and fixed share, so do the
        fast mixture's, the calibrators and the running prior learn, the slot is free again.
        ``weight``: ``1 / k`` when ``k`` outcomes mature at this vector (the fast mixture, the
        calibrators and the prior count them once in all; each slot sees one forecast of its own).
        ``lag``: vectors from the forecast to its outcome, for a market outcome (1 otherwise): the fast
        mixture's rate is divided by its square root (see the module docstring)."""
        experts = forecast.experts
        if forecast.slot >= 0:
            slot = self.slots[forecast.slot]
            slot.weights = bayes_update(slot.weights, [experts[name] for name in self.names], y, self.share,
                                        self.initial)
            self._release(forecast.slot)
            gate = self.__dict__.get("gate")
            if gate is not None and gate.observe(forecast.slot, experts, y):
                self._skill_shown()
        self.fast_weights = bayes_update(self.fast_weights, [experts[name] for name in self.base], y, FAST_SHARE,
                                         self.fast_initial, weight if lag <= 1 else weight / math.sqrt(lag))
        for name, calibrator in self.calibrators.items():
            calibrator.learn(experts[name], y, weight)
        self.prior.learn(y, weight)

    def _skill_shown(self) -> None:
        """The gate opened: the stream's label is learnable, so the slots start again from the weights
        of a stream known to be (``START["datasets"]``), and the bound counts from here."""
        self.initial = self._initial(*START["datasets"], len(self.base) - len(NO_SKILL))
        for slot in self.slots:
            slot.weights = list(self.initial)

    def release(self, forecast: Forecast) -> None:
        """A forecast whose outcome will not be learned (flat): its slot is free, nothing changes."""
        if forecast.slot >= 0:
            self._release(forecast.slot)

    def _release(self, index: int) -> None:
        slot = self.slots[index]
        if slot.busy:
            slot.busy = False
            self.outstanding -= 1
            heapq.heappush(self.free, index)
            self.last_freed = index

    @property
    def regret_bound(self) -> float:
        """Nats by which the cumulative log-loss may exceed the constant 0.5's, apart from ``share``
        per forecast: ``K (-ln pi_constant)`` with ``K`` the slots opened so far; 0 while the skill
        gate keeps the forecasts at 0.5 (once it opens, counted from the opening)."""
        if not self.skill_shown:
            return 0.0
        return max(1, len(self.slots)) * -math.log(self.initial[0])

    def weights(self) -> dict[str, float]:
        """Effective weights of the base experts, averaged over the slots (what the metrics show)."""
        slots = [slot.weights for slot in self.slots] or [self.initial]
        out = dict.fromkeys(self.base, 0.0)
        for weights in slots:
            for name, w, f in zip(self.base, weights, self.fast_weights, strict=False):
                out[name] += (w + weights[-1] * f) / len(slots)
        return out

    def member_weight(self, name: str) -> float:
        """Weight of a member, raw and recalibrated together."""
        weights = self.weights()
        return weights.get(name, 0.0) + weights.get(f"{name}~cal", 0.0)


class Regimes:
    """Market regime of a feature vector: ``volatile``, ``trending``, ``ranging`` or ``unknown``.

    Volatile: ``volatility_20`` above 1.5x its exponentially weighted average (half-life ~500 vectors).
    Trending: otherwise, a 20-tick move ``|ret_20|`` beyond one standard deviation of a random walk's
    20-step move (``volatility_20 * sqrt(20)``). Ranging: the rest. Unknown: those features not ready.
    """

    __slots__ = ("average", "rate")

    def __init__(self, rate: float = 1.0 / 500.0):
        self.average: float | None = None
        self.rate = rate

    def classify(self, x: dict[str, float], update: bool = True) -> str:
        volatility = x.get("volatility_20")
        move = x.get("ret_20")
        if volatility is None or move is None:
            return "unknown"
        average = self.average
        average = volatility if average is None else average + (volatility - average) * self.rate
        if update:
            self.average = average
        if volatility > 1.5 * average:
            return "volatile"
        if abs(move) > volatility * 4.47213595499958:
            return "trending"
        return "ranging"


class Variant:
    """Members (guarded) and the mixture over them; with ``regime_weights`` one mixture per regime."""

    def __init__(self, members: dict[str, Any], guard: bool = True, regime_weights: bool = False,
                 share: float = 1e-4, start: tuple[float, float, float] = START["markets"],
                 gate_alpha: float | None = None):
        self.guard, self.share, self.start, self.gate_alpha = guard, share, start, gate_alpha
        self.members = {name: GuardedMember(m) for name, m in members.items()} if guard else dict(members)
        self.regimes = Regimes() if regime_weights else None
        self.mixtures: dict[str, Ensemble] = {}

    def regime(self, x: dict[str, float], update: bool = True) -> str:
        return self.regimes.classify(x, update) if self.regimes is not None else "all"

    def mixture(self, regime: str = "all") -> Ensemble:
        mixture = self.mixtures.get(regime)
        if mixture is None:
            # A variant restored from a checkpoint written before the start weights were chosen has none.
            constant, prior, fast = self.__dict__.get("start", START["markets"])
            # A labelled dataset is brought to be learned; a market has to show it has something to learn.
            gate = self.__dict__.get("gate_alpha") if (constant, prior, fast) == START["markets"] else None
            mixture = self.mixtures[regime] = Ensemble(tuple(self.members), constant, prior, fast, share=self.share,
                                                       gate_alpha=gate)
        return mixture

    def forecast(self, x: dict[str, float], regime: str = "all", reserve: bool = True) -> Forecast:
        probabilities = {name: m.predict_proba_one(x)[1] for name, m in self.members.items()}
        return self.mixture(regime).forecast(probabilities, reserve)

    def learn(self, x: dict[str, float], y: int, forecast: Forecast, regime: str, weight: float = 1.0,
              member_weight: float = 1.0, lag: int = 1) -> None:
        """``weight``: the outcome's share of the evidence for the mixture; ``member_weight``: the
        members' sample weight (streams.learning.SymbolLearner._mature says why they differ)."""
        for member in self.members.values():
            learn_weighted(member, x, y, member_weight)
        self.mixture(regime).learn(forecast, y, weight, lag)

    def release(self, forecast: Forecast, regime: str) -> None:
        self.mixture(regime).release(forecast)

    def rejections(self) -> list[tuple[str, str]]:
        """Learning steps refused or undone by the guard since the last call."""
        if not self.guard:
            return []
        return [item for member in self.members.values() for item in member.drain()]

    def replace_member(self, name: str, member: Any) -> None:
        self.members[name] = GuardedMember(member) if self.guard else member

    def weights(self) -> dict[str, float]:
        return self.mixture().weights()
