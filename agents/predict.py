"""predict: feature vector -> predictions (+ market outcomes on the feedback topic, feature, variance,
concept and prediction drift alerts, model events, performance records).

:func:`predict_and_learn` is the stage. The featurize agent calls it in line for every market vector
it computes (one Faust consumption per tick instead of two); the ``predict`` agent here applies it to
vectors that enter from outside (the ``external-features`` topic: labelled datasets,
precomputed features). Learning from market outcomes happens here, in
line, before each prediction, so that replays are deterministic (see streams.learning). Models are
checkpointed per input partition with their offset (see agents.checkpoints)."""

from __future__ import annotations

import logging
import math
import time
import uuid
import zlib
from collections import deque

from agents.app import app, avro, dead_letter, metrics, publish, settings, topics
from agents.checkpoints import PartitionCheckpoints, register_timer
from agents.registry import PartitionModels, Registry
from schemas.codec import DecodeError
from streams.features import FEATURE_SET
from streams.learning import InvalidVector

log = logging.getLogger("livelearn.predict")
STAGE = "predict"
SEVERE = ("HIGH", "CRITICAL")

registry = Registry(settings)
metrics.drift_false_alarm_bound.set(registry.drift_config.expected_false_alarms_per_10k)
# A checkpoint is only restored into the same model configuration.
MODEL_CONFIG = zlib.crc32(f"{settings.members}|{settings.challengers}|{settings.guard_updates}|{settings.label}|"
                          f"{settings.predict_on}".encode())
# Models pickle to hundreds of kB (MLP, replay buffers, drift windows): checkpointing every second
# took ~10% of the stage's time in a profile, hence a longer default than the feature stage's.
checkpoints = PartitionCheckpoints(STAGE, "external-features", f"models-v8-{FEATURE_SET}-{MODEL_CONFIG:08x}",
                                   PartitionModels,
                                   every_events=int(settings.model_checkpoint_events),
                                   every_seconds=float(settings.model_checkpoint_seconds))
register_timer(checkpoints)


@app.on_partitions_revoked.connect
def _forget_revoked(sender, revoked, **kwargs):
    checkpoints.forget({tp.partition for tp in revoked if tp.topic == settings.topic("external-features")})


# Where learners live: this stage's own partitions (external vectors) and any other stage that runs
# models in line (featurize registers its own; see agents.featurize).
MODEL_HOLDERS: list = [lambda: checkpoints.states.values()]


def find_learner(symbol: str):
    for partition_models in MODEL_HOLDERS:
        for models in partition_models():
            learner = models.learners.get(symbol)
            if learner is not None:
                return learner
    return None


class SymbolActivity:
    """What a performance record reports beside the scores: latency, label lag, events and errors
    of one symbol on this worker (process memory; not checkpointed)."""

    __slots__ = ("latencies_ms", "label_lags_ms", "events", "errors", "reported_at")

    def __init__(self):
        self.latencies_ms: deque[float] = deque(maxlen=1000)
        self.label_lags_ms: deque[float] = deque(maxlen=1000)
        self.events = self.errors = 0
        self.reported_at = 0


activity: dict[str, SymbolActivity] = {}


def _quantile(values, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def performance_record(learner, seen: SymbolActivity, event_time_ms: int) -> dict:
    mixture = learner.ensemble.mixture()
    return {
        "symbol": learner.symbol, "event_time_ms": event_time_ms, "model_id": learner.model_id,
        "model_version": learner.version, "champion": learner.champion, "labelled": learner.scores["ensemble"].total,
        "members": learner.performance(), "weights": learner.ensemble.weights(),
        "skill": {name: {k: v if math.isfinite(v) else None for k, v in skill.items()}
                  for name, skill in learner.skill().items()},
        "outcomes": learner.outcomes, "flat": learner.flat,
        "regret_bound": mixture.regret_bound, "slots": len(mixture.slots),
        "latency_p50_ms": _quantile(seen.latencies_ms, 0.5),
        "latency_p99_ms": _quantile(seen.latencies_ms, 0.99), "label_lag_p50_ms": _quantile(seen.label_lags_ms, 0.5),
        "events": seen.events, "errors": seen.errors,
    }


def model_event_outputs(learner, events: list[dict], key: bytes) -> list[tuple]:
    """Promotions, rollbacks and refused updates the learner decided while learning."""
    outputs = []
    for event in events:
        record = {"event_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{learner.symbol}|{event['kind']}|{event['version']}|"
                                                             f"{event['event_time_ms']}|{event['reason']}").hex,
                  "symbol": learner.symbol, "alert_id": None, **event}
        metrics.model_events.labels(event["kind"]).inc()
        if event["kind"] == "REJECTED_UPDATE":
            log.warning("%s: refused a learning step: %s", learner.symbol, event["reason"])
        else:
            log.info("%s: %s %s: %s", learner.symbol, event["kind"], event["model_id"], event["reason"])
        outputs.append(("model-events", key, record, event["event_time_ms"]))
    return outputs


def shadow_outputs(learner, prediction: dict, shadow: dict, key: bytes) -> list[tuple]:
    return [("shadow-predictions", key, {
        **prediction, "model_id": f"{learner.model_id}/{variant}", "probability_up": forecast.p_up,
        "predicted_up": forecast.p_up > 0.5, "confidence": forecast.confidence,
        "member_probabilities": {**forecast.member_probabilities,
                                 **{k: prediction["member_probabilities"][k] for k in ("persistence", "trade_side",
                                                                                      "prior")}},
        "member_weights": forecast.weights,
    }, prediction["event_time_ms"]) for variant, forecast in shadow.items()]


def react_to_drift(learner, alert: dict) -> list[tuple]:
    """Adaptive response to concept drift, recorded as a ModelEvent carrying the alert id."""
    if alert["kind"] != "CONCEPT" or alert["status"] != "FIRING" or not settings.drift_response_on:
        return []
    if alert["severity"] in SEVERE:
        member = learner.worst_member()
        learner.reset_member(member)
        kind, reason = "RESET", f"concept drift ({alert['severity']}): reset the worst member {member}"
    else:
        member = "mlp"
        if member not in learner.ensemble.members:
            return []
        learner.ensemble.members[member].raise_learning_rate()
        kind, reason = "LEARNING_RATE", f"concept drift ({alert['severity']}): {member} back to its initial rate"
    event = {
        "event_id": uuid.uuid5(uuid.NAMESPACE_URL, alert["alert_id"] + kind).hex, "symbol": learner.symbol,
        "model_id": f"{learner.model_id}/{member}", "kind": kind, "version": learner.version, "reason": reason,
        "alert_id": alert["alert_id"], "details": {"p_value": repr(alert["p_value"]),
                                                  "effect_size": repr(alert["effect_size"])},
        "event_time_ms": alert["created_time_ms"],
    }
    metrics.model_events.labels(kind).inc()
    return [("model-events", learner.symbol.encode(), event, event["event_time_ms"])]


def export_drift(monitor) -> None:
    """p-values and statistics of the checks that ran since the last export."""
    for channel in monitor.channels.values():
        if channel.fresh_results:
            channel.fresh_results = False
            for stream_name, test, statistic, p, *_ in channel.last_results:
                metrics.drift_p_value.labels(monitor.symbol, channel.kind, stream_name, test).set(p)
                metrics.drift_statistic.labels(monitor.symbol, channel.kind, stream_name, test).set(statistic)


def export_scores(learner) -> None:
    symbol = learner.symbol
    for name, score in learner.scores.items():
        if score.n:
            metrics.member_accuracy.labels(symbol, name).set(score.accuracy)
            metrics.member_log_loss.labels(symbol, name).set(score.log_loss)
    for name, weight in learner.ensemble.weights().items():
        metrics.member_weight.labels(symbol, name).set(weight)
    for name, skill in learner.skill().items():
        for reference in ("prior", "constant"):
            value = skill[f"vs_{reference}"]
            if math.isfinite(value):
                metrics.skill.labels(symbol, name, reference).set(value)
    if learner.flat_share is not None:
        metrics.flat_share.labels(symbol).set(learner.flat_share)


def predict_and_learn_now(models: PartitionModels, vector: dict, symbol_key: bytes) -> list[tuple]:
    """Everything the predict stage does with one decoded vector, without I/O: learn the matured
    outcomes, predict, test for drift. Returns the records to publish, ``(stage, key, record,
    timestamp_ms)``, in order. Raises InvalidVector (or any error of the cores) for a bad vector.

    The worker (:func:`predict_and_learn`) and the batched replay (agents.backtest) both run this, so
    they give the same records from the same inputs."""
    started = time.perf_counter()
    learner = models.learner(vector, registry)
    step = learner.process(vector)
    prediction, outcomes = step.prediction, step.outcomes
    if prediction is None:
        metrics.duplicates.labels(STAGE).inc()
        return []
    metrics.events.labels(STAGE).inc()
    seen = activity.get(learner.symbol)
    if seen is None:
        seen = activity[learner.symbol] = SymbolActivity()
    seen.events += 1
    monitor = models.monitor(learner.symbol, registry)
    outputs, alerts = [], []
    for outcome in outcomes:
        outputs.append(("feedback", symbol_key, outcome, outcome["feedback_time_ms"]))
        lag_ms = outcome["feedback_time_ms"] - outcome["event_time_ms"]
        seen.label_lags_ms.append(lag_ms)
        metrics.label_lag.observe(lag_ms / 1000.0)
    for loss in step.matured_losses:
        alerts += monitor.update_error(loss, vector["event_time_ms"])
    alerts += monitor.update_prediction(prediction["probability_up"], prediction["event_time_ms"], vector["values"],
                                        learner.probability_up)
    prediction["latency_ms"] = (time.perf_counter() - started) * 1000.0
    outputs.append(("predictions", symbol_key, prediction, prediction["event_time_ms"]))
    if step.shadow:
        outputs += shadow_outputs(learner, prediction, step.shadow, symbol_key)
    if step.events:
        outputs += model_event_outputs(learner, step.events, symbol_key)
    # Feature drift runs after the prediction; its windows are checkpointed with the models. A
    # labelled dataset is tested on its own features.
    names = registry.drift_features if vector["feature_set"] == FEATURE_SET else None
    alerts += monitor.update_features(vector["values"], vector["event_time_ms"], names)
    for alert in alerts:
        metrics.alerts.labels(alert["kind"], alert["severity"]).inc()
        outputs.append(("alerts", symbol_key, alert, alert["created_time_ms"]))
        outputs += react_to_drift(learner, alert)
    if learner.scores["ensemble"].n and vector["tick_index"] % 50 == 0:
        export_scores(learner)
    export_drift(monitor)
    labelled = learner.scores["ensemble"].total
    if labelled - seen.reported_at >= settings.performance_interval:
        seen.reported_at = labelled
        outputs.append(("performance", symbol_key, performance_record(learner, seen, vector["event_time_ms"]),
                        vector["event_time_ms"]))
    elapsed = time.perf_counter() - started
    seen.latencies_ms.append(elapsed * 1000.0)
    metrics.latency.labels(STAGE).observe(elapsed)
    return outputs


async def predict_and_learn(models: PartitionModels, vector: dict, message) -> None:
    """The predict stage on one vector in the worker: :func:`predict_and_learn_now`, then publish.
    Errors are dead-lettered (with the message that carried the input)."""
    try:
        outputs = predict_and_learn_now(models, vector, message.key)
    except InvalidVector as exc:
        await dead_letter(message, STAGE, "invalid_features", str(exc))
        return
    except Exception as exc:
        log.exception("predict failed on %s[%s]@%s", message.topic, message.partition, message.offset)
        activity.setdefault(vector["symbol"], SymbolActivity()).errors += 1
        await dead_letter(message, STAGE, "internal_error", f"{type(exc).__name__}: {exc}")
        return
    for stage, key, record, timestamp_ms in outputs:
        await publish(stage, key, record, timestamp_ms)


@app.agent(topics["external-features"])
async def predict(stream):
    """Feature vectors from outside (datasets replayed with ``livelearn replay-dataset``, vectors a
    user computes). Vectors of the featurize stage never pass here: the featurize agent hands each vector it computes to :func:`predict_and_learn`."""
    codec = avro["external-features"]
    stream = stream.noack()
    async for event, models in checkpoints.unapplied(stream):
        message = event.message
        partition, offset = message.partition, message.offset
        try:
            vector = codec.decode(message.value, message.topic, partition, offset)
        except DecodeError as exc:
            await dead_letter(message, STAGE, "decode_error", str(exc))
        else:
            await predict_and_learn(models, vector, message)
        await checkpoints.done(stream, event, partition, offset)
