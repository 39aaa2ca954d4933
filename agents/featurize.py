"""featurize: ticks -> features -> (in line) predictions.

A thin adapter around :class:`streams.features.FeatureEngine`: each vector is published on the
features topic and handed straight to the predict stage (:func:`agents.predict.predict_and_learn`),
instead of being consumed back from Kafka by a second agent (a profile showed Faust's per-event
machinery as the largest cost after learning). Feature engines and models of an input partition are
checkpointed together with its offset (see agents.checkpoints)."""

from __future__ import annotations

import logging
import time

from agents.app import app, avro, dead_letter, metrics, publish, settings, topics
from agents.checkpoints import PartitionCheckpoints, register_timer
from agents.predict import MODEL_CONFIG, MODEL_HOLDERS, predict_and_learn
from agents.registry import PartitionModels
from schemas.codec import DecodeError
from streams.features import FEATURE_SET, FeatureEngine, LateTick
from streams.ticks import InvalidTick, check_tick

log = logging.getLogger("livelearn.featurize")
STAGE = "featurize"

class PartitionPipeline:
    """Feature engine and models of one ticks partition (checkpointed whole)."""

    def __init__(self):
        self.engine = FeatureEngine(late_grace_ms=int(settings.late_grace_ms), emit=settings.predict_on)
        self.models = PartitionModels()


checkpoints = PartitionCheckpoints(STAGE, "ticks", f"pipeline-v5-{FEATURE_SET}-{MODEL_CONFIG:08x}",
                                   PartitionPipeline,
                                   every_events=int(settings.model_checkpoint_events),
                                   every_seconds=float(settings.model_checkpoint_seconds))
register_timer(checkpoints)
MODEL_HOLDERS.append(lambda: (state.models for state in checkpoints.states.values()))


@app.on_partitions_revoked.connect
def _forget_revoked(sender, revoked, **kwargs):
    checkpoints.forget({tp.partition for tp in revoked if tp.topic == settings.topic("ticks")})


def featurize_now(engine: FeatureEngine, value: bytes, topic: str, partition: int,
                  offset: int) -> tuple[dict | None, tuple[str, str] | None]:
    """One raw tick through the feature core, without I/O: ``(vector, None)``, ``(None, None)`` while
    the engine warms up, or ``(None, (reason_code, reason))`` for a record to dead-letter. Shared by
    the worker and the batched replay (agents.backtest)."""
    try:
        tick = avro["ticks"].decode(value, topic, partition, offset)
        check_tick(tick)
        vector = engine.update(tick)
    except DecodeError as exc:
        return None, ("decode_error", str(exc))
    except InvalidTick as exc:
        return None, (exc.code, str(exc))
    except LateTick as exc:
        return None, ("late_event", str(exc))
    except Exception as exc:  # one bad record must not stop the worker
        log.exception("featurize failed on %s[%s]@%s", topic, partition, offset)
        return None, ("internal_error", f"{type(exc).__name__}: {exc}")
    metrics.events.labels(STAGE).inc()
    return vector, None


@app.agent(topics["ticks"])
async def featurize(stream):
    latency = metrics.latency.labels(STAGE)
    stream = stream.noack()
    async for event, state in checkpoints.unapplied(stream):
        message = event.message
        partition, offset = message.partition, message.offset
        started = time.perf_counter()
        vector, rejection = featurize_now(state.engine, message.value, message.topic, partition, offset)
        if rejection is not None:
            await dead_letter(message, STAGE, *rejection)
        if vector is not None:
            await publish("features", message.key, vector, vector["event_time_ms"])
        latency.observe(time.perf_counter() - started)
        if vector is not None:
            await predict_and_learn(state.models, vector, message)
        await checkpoints.done(stream, event, partition, offset)
