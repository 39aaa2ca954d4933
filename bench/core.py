"""Per-event cost of the pure core, in process, with a per-stage breakdown and River's scaled logistic
regression beside it in the same run (issue #18).

On the real data in data/ (a day of one-minute klines; 20,000 ticks of the BTCUSDT capture):

* ``pipeline``: decode a tick, the whole partition pipeline (gate, features, learning, prediction,
  drift), encode every output: what a worker's and a backtest's own code costs per tick and per vector;
* stages, each timed alone over the same inputs in the order the pipeline meets them: ``decode``;
  ``features`` (validation, tick gate, feature engine); ``learner`` (members, ensemble, guard, scores:
  ``SymbolLearner.process`` on the pipeline's vectors); ``drift`` (the symbol's monitor on the same
  vectors and predictions; not the CONCEPT channel, fed by outcomes); ``encode`` (every output
  record). Their sum is below ``pipeline`` (429 against 587 us a vector on 2026-12-04): the learner
  costs more inside the pipeline than alone, as it does alone with the caches evicted between
  vectors (docs/STATUS.md);
* the learner split into ``members`` (the members' own predict and learn), ``guard`` (the guard's
  checks, snapshots and extra predictions around them), ``ensemble`` (the mixture, its calibrators
  and the running prior) and ``records`` (the rest of ``SymbolLearner.process``: pending outcomes,
  scores, skill blocks, the prediction and outcome records): each one's exclusive share of an
  instrumented run (every call of those classes timed, nested calls subtracted from their callers),
  times the uninstrumented ``learner`` figure, so the four add up to it;
* ``river_lr``: River's ``StandardScaler | LogisticRegression`` predict_proba_one + learn_one on the
  same vectors' model features (the cheapest sensible online learner: the issue's yardstick);
* the members alone (``core_members``, klines only): each default member's own ``predict_proba_one``
  and ``learn_one`` per call on the same vectors, outside the pipeline, and the MLP's training step
  (the extra cost of the calls that take one, every ``train_every`` labels), with torch's profile of
  those steps by operation: the part of the pipeline's cost that trimming the code around the
  members cannot remove without changing what they compute;
* the second day (``core_second_day``, klines only): the day's bars again, event times a day later,
  timed after an untimed first day: the pipeline, the learner and the drift monitor as they run from
  then on. The stages above time a fresh state over one day, where the monitor tests nothing while its
  reference fills: its second day costs about twice its first (89.0 against 45.3 us a vector, the
  pipeline 787.3 against 675.7, on 2026-12-07).

Torch and River are imported before timing (a worker does that at start); each measurement is the best
of ``--repeat`` runs (the machine is noisy). One RESULT line per file.

    python bench/core.py [--repeat 3] [--limit 20000]
"""

from __future__ import annotations

import argparse
import functools
import time
from collections import Counter

from common import SHARED, result

from agents.app import pipeline_config
from agents.settings import Settings
from connectors.recorded import read_file
from schemas.codec import AvroCodec
from streams.drift import DriftMonitor
from streams.drift.seasonality import DAY_MS
from streams.ensemble import Ensemble
from streams.features import FEATURE_SET, MODEL_FEATURES
from streams.guard import GuardedMember
from streams.learning import SymbolLearner
from streams.mlp import TorchMLP
from streams.models import RiverMember, SmoothedTree, make_member
from streams.pipeline import PartitionPipeline
from streams.tick_gate import TickGate
from streams.ticks import check_tick

FILES = ("binance/klines/spot/BTCUSDT-1m-2020-01-01.zip", "binance/ws/spot_btcusdt_20240808.gz")
SCHEMAS = {"features": "features", "predictions": "prediction", "shadow-predictions": "prediction",
           "outcomes": "feedback", "alerts": "drift_alert", "model-events": "model_event",
           "performance": "performance"}


def best(repeat: int, run) -> float:
    return min(run() for _ in range(repeat))


def drive(pipeline: PartitionPipeline, raw: list[bytes], tick_codec: AvroCodec, codecs: dict[str, AvroCodec],
          now_ms: int) -> None:
    """What a worker's code does per tick: decode it, run the partition pipeline, encode every output."""
    for value in raw:
        for output in pipeline.on_tick(tick_codec.decode(value), now_ms).records:
            codecs[output.stage].encode(output.record)


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


# (class, method, stage) timed by the learner split; a call's time counts for its stage less the time
# of the timed calls it makes.
SPLIT = ((RiverMember, "predict_proba_one", "members"), (RiverMember, "learn_one", "members"),
         (SmoothedTree, "predict_proba_one", "members"), (TorchMLP, "predict_proba_one", "members"),
         (TorchMLP, "learn_one", "members"), (GuardedMember, "predict_proba_one", "guard"),
         (GuardedMember, "learn_one", "guard"), (Ensemble, "forecast", "ensemble"), (Ensemble, "learn", "ensemble"),
         (Ensemble, "release", "ensemble"), (SymbolLearner, "process", "records"))


def learner_split(vectors: list[dict], config) -> dict[str, float]:
    """Exclusive share of each stage of :data:`SPLIT` in one instrumented run of the learner."""
    totals: Counter = Counter()
    stack: list[list] = []

    def timed(original, stage):
        @functools.wraps(original)
        def call(*args, **kwargs):
            stack.append([time.perf_counter(), 0.0])
            try:
                return original(*args, **kwargs)
            finally:
                started, nested = stack.pop()
                elapsed = time.perf_counter() - started
                totals[stage] += elapsed - nested
                if stack:
                    stack[-1][1] += elapsed
        return call

    originals = [(cls, method, cls.__dict__[method]) for cls, method, _ in SPLIT]
    try:
        for cls, method, stage in SPLIT:
            setattr(cls, method, timed(cls.__dict__[method], stage))
        learners: dict[str, SymbolLearner] = {}
        for vector in vectors:
            symbol = vector["symbol"]
            if symbol not in learners:
                learners[symbol] = SymbolLearner(symbol, config.learner, model_features=MODEL_FEATURES)
            learners[symbol].process(vector)
    finally:
        for cls, method, original in originals:
            setattr(cls, method, original)
    whole = sum(totals.values())
    return {stage: totals[stage] / whole for stage in ("members", "guard", "ensemble", "records")}


def next_up(vectors: list[dict]) -> list[int]:
    """A label per vector: whether the next vector's price is higher (the timing needs labels, not skill)."""
    return [int(b["price"] > a["price"]) for a, b in zip(vectors, vectors[1:], strict=False)] + [0]


def members_alone(name: str, settings: Settings, vectors: list[dict], river_lr_us: float, repeat: int) -> None:
    """Each member's own predict and learn per call (each on a member warmed on the first 300 vectors for
    predict, a fresh one for learn), the MLP's training step, and torch's profile of 100 steps."""
    import torch

    rows, labels = [vector["values"] for vector in vectors], next_up(vectors)
    calls: dict[str, dict[str, float]] = {}
    for member in settings.members.split(","):
        warm = make_member(member, seed=1, features=MODEL_FEATURES)
        for x, y in zip(rows[:300], labels, strict=False):
            warm.learn_one(x, y)

        def predict(model=warm):
            return timed(lambda: [model.predict_proba_one(x) for x in rows])

        def learn(member=member):
            fresh = make_member(member, seed=1, features=MODEL_FEATURES)
            return timed(lambda: [fresh.learn_one(x, y) for x, y in zip(rows, labels, strict=True)])
        calls[member] = {"predict_us": round(1e6 * best(repeat, predict) / len(rows), 1),
                         "learn_us": round(1e6 * best(repeat, learn) / len(rows), 1)}
    if "mlp" not in calls:
        result("core_members", file=name, members=settings.members, vectors=len(rows), us_per_call=calls)
        return
    mlp = make_member("mlp", seed=1, features=MODEL_FEATURES)
    step_calls: list[float] = []
    other_calls: list[float] = []
    for x, y in zip(rows, labels, strict=True):
        steps, started = mlp.steps, time.perf_counter()
        mlp.learn_one(x, y)
        (step_calls if mlp.steps > steps else other_calls).append(time.perf_counter() - started)
    step_us = 1e6 * (sum(step_calls) / len(step_calls) - sum(other_calls) / len(other_calls))
    together = sum(c["predict_us"] + c["learn_us"] for c in calls.values())
    print(f"{name}: members alone, us per call: " + ", ".join(
        f"{m} predict {c['predict_us']} learn {c['learn_us']}" for m, c in calls.items())
        + f"; together {together:.1f} = {together / river_lr_us:.1f}x River's LR ({river_lr_us:.1f}); the MLP's "
        f"training step {step_us:.0f} us ({len(step_calls)} steps)", flush=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        profiled = make_member("mlp", seed=1, features=MODEL_FEATURES)
        for x, y in zip(rows[:100 * profiled.train_every], labels, strict=False):
            profiled.learn_one(x, y)
    print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=12), flush=True)
    result("core_members", file=name, members=settings.members, vectors=len(rows), us_per_call=calls,
           together_us=round(together, 1), river_lr_us=round(river_lr_us, 1),
           members_over_river_lr=round(together / river_lr_us, 1), mlp_step_us=round(step_us, 1),
           mlp_steps=len(step_calls))


def measure(name: str, settings: Settings, repeat: int, limit: int) -> None:
    config = pipeline_config(settings)
    tick_codec = AvroCodec.for_topic_schema("tick")
    codecs = {stage: AvroCodec.for_topic_schema(schema) for stage, schema in SCHEMAS.items()}
    ticks = [item.tick for item in read_file(SHARED / name) if item.tick is not None][:limit]
    raw = [tick_codec.encode(tick) for tick in ticks]
    now_ms = int(time.time() * 1000)

    # One full run keeps what the stages are timed on: vectors, predictions, outputs.
    pipeline = PartitionPipeline(config)
    outputs, vectors = [], []
    for value in raw:
        for output in pipeline.on_tick(tick_codec.decode(value), now_ms).records:
            outputs.append(output)
            if output.stage == "features":
                vectors.append(output.record)

    def whole() -> float:
        fresh = PartitionPipeline(config)
        return timed(lambda: drive(fresh, raw, tick_codec, codecs, now_ms))

    def decode() -> float:
        return timed(lambda: [tick_codec.decode(value) for value in raw])

    def features() -> float:
        fresh = PartitionPipeline(config)
        engine, gate = fresh.engine, TickGate(config.gate)

        def work():
            for tick in ticks:
                check_tick(tick)
                if gate.check(tick, now_ms) is None:
                    engine.update(tick)
                    gate.accept(tick)
        return timed(work)

    def learner() -> float:
        learners: dict[str, SymbolLearner] = {}

        def work():
            for vector in vectors:
                symbol = vector["symbol"]
                if symbol not in learners:
                    learners[symbol] = SymbolLearner(symbol, config.learner, model_features=MODEL_FEATURES)
                learners[symbol].process(vector)
        return timed(work)

    predictions = [o.record for o in outputs if o.stage == "predictions"]

    def drift() -> float:
        monitors: dict[str, DriftMonitor] = {}

        def work():
            for vector, prediction in zip(vectors, predictions, strict=False):
                symbol = vector["symbol"]
                monitor = monitors.get(symbol)
                if monitor is None:
                    monitor = monitors[symbol] = DriftMonitor(symbol, config.drift, config.basis)
                monitor.update_prediction(prediction["probability_up"], prediction["event_time_ms"])
                monitor.update_features(vector["values"], vector["event_time_ms"],
                                        config.drift_features if vector["feature_set"] == FEATURE_SET else None)
        return timed(work)

    def encode() -> float:
        return timed(lambda: [codecs[o.stage].encode(o.record) for o in outputs])

    def river_lr() -> float:
        from streams.models import river_model

        model = river_model("logreg")
        rows = [{k: v for k, v in vector["values"].items() if k in MODEL_FEATURES} for vector in vectors]
        labels = next_up(vectors)

        def work():
            for x, y in zip(rows, labels, strict=True):
                model.predict_proba_one(x)
                model.learn_one(x, y)
        return timed(work)

    seconds = {stage: best(repeat, run) for stage, run in (
        ("pipeline", whole), ("decode", decode), ("features", features), ("learner", learner), ("drift", drift),
        ("encode", encode), ("river_lr", river_lr))}
    for stage, share in learner_split(vectors, config).items():
        seconds[stage] = share * seconds["learner"]
    n = max(len(vectors), 1)
    per_vector = {stage: round(1e6 * s / n, 1) for stage, s in seconds.items()}
    result("core", file=name, members=settings.members, ticks=len(raw), vectors=len(vectors),
           us_per_tick=round(1e6 * seconds["pipeline"] / len(raw), 1), us_per_vector=per_vector,
           pipeline_over_river_lr=round(seconds["pipeline"] / seconds["river_lr"], 1))
    if "-1m-" in name:
        members_alone(name, settings, vectors, 1e6 * seconds["river_lr"] / n, repeat)
        second_day(name, settings, config, ticks, 1e6 * seconds["river_lr"] / n, repeat, now_ms)


def second_day(name: str, settings: Settings, config, ticks: list[dict], river_lr_us: float, repeat: int, now_ms: int) -> None:
    """The day's bars again, event times a day later, after the first day: the pipeline, the learner
    and the drift monitor as they run from then on (the monitor tests nothing on most of its first day
    while its reference fills, which made the drift stage above about half of what it costs later:
    bench/drift_real.py's cost). Each timed after an untimed first day on a fresh state, best of
    ``repeat``; River's LR from the first day's run (its cost per vector does not change with age)."""
    tick_codec = AvroCodec.for_topic_schema("tick")
    codecs = {stage: AvroCodec.for_topic_schema(schema) for stage, schema in SCHEMAS.items()}
    days = [[tick_codec.encode({**tick, "event_time_ms": tick["event_time_ms"] + day * DAY_MS}) for tick in ticks]
            for day in range(2)]
    outputs: list[list] = [[], []]
    pipeline = PartitionPipeline(config)
    for day, raw in enumerate(days):
        for value in raw:
            outputs[day].extend(pipeline.on_tick(tick_codec.decode(value), now_ms).records)
    vectors = [[o.record for o in out if o.stage == "features"] for out in outputs]
    predictions = [[o.record for o in out if o.stage == "predictions"] for out in outputs]

    def pipeline_day() -> float:
        fresh = PartitionPipeline(config)
        drive(fresh, days[0], tick_codec, codecs, now_ms)
        return timed(lambda: drive(fresh, days[1], tick_codec, codecs, now_ms))

    def learner_day() -> float:
        learner = SymbolLearner(vectors[0][0]["symbol"], config.learner, model_features=MODEL_FEATURES)
        for vector in vectors[0]:
            learner.process(vector)
        return timed(lambda: [learner.process(vector) for vector in vectors[1]])

    def drift_day() -> float:
        monitor = DriftMonitor(vectors[0][0]["symbol"], config.drift, config.basis)

        def run(day):
            for vector, prediction in zip(vectors[day], predictions[day], strict=False):
                monitor.update_prediction(prediction["probability_up"], prediction["event_time_ms"])
                monitor.update_features(vector["values"], vector["event_time_ms"],
                                        config.drift_features if vector["feature_set"] == FEATURE_SET else None)
        run(0)
        return timed(lambda: run(1))

    n = max(len(vectors[1]), 1)
    us = {stage: round(1e6 * best(repeat, run) / n, 1)
          for stage, run in (("pipeline", pipeline_day), ("learner", learner_day), ("drift", drift_day))}
    result("core_second_day", file=name, members=settings.members, vectors=n, us_per_vector=us, river_lr_us_per_vector=round(river_lr_us, 1),
           pipeline_over_river_lr=round(us["pipeline"] / river_lr_us, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit", type=int, default=20_000, help="ticks per file")
    args = parser.parse_args()
    settings = Settings()
    SymbolLearner("WARMUP", pipeline_config(settings).learner)
    for name in FILES:
        measure(name, settings, args.repeat, args.limit)


if __name__ == "__main__":
    main()
