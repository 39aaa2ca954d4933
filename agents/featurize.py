"""featurize: ticks -> features. A thin adapter around :class:`streams.features.FeatureEngine`."""

from __future__ import annotations

import logging
import time

from agents.app import app, avro, dead_letter, metrics, publish, settings, topics
from schemas.codec import DecodeError
from streams.features import FeatureEngine, LateTick
from streams.ticks import InvalidTick, check_tick

log = logging.getLogger("livelearn.featurize")
STAGE = "featurize"

engine = FeatureEngine(late_grace_ms=int(settings.late_grace_ms))


@app.agent(topics["ticks"])
async def featurize(stream):
    tick_codec = avro["ticks"]
    latency = metrics.latency.labels(STAGE)
    events = metrics.events.labels(STAGE)
    async for event in stream.events():
        message = event.message
        started = time.perf_counter()
        try:
            tick = tick_codec.decode(message.value, message.topic, message.partition, message.offset)
            check_tick(tick)
            vector = engine.update(tick)
        except DecodeError as exc:
            await dead_letter(message, STAGE, "decode_error", str(exc))
            continue
        except InvalidTick as exc:
            await dead_letter(message, STAGE, exc.code, str(exc))
            continue
        except LateTick as exc:
            await dead_letter(message, STAGE, "late_event", str(exc))
            continue
        except Exception as exc:  # one bad record must not stop the worker
            log.exception("featurize failed on %s[%s]@%s", message.topic, message.partition, message.offset)
            await dead_letter(message, STAGE, "internal_error", f"{type(exc).__name__}: {exc}")
            continue
        events.inc()
        if vector is not None:
            await publish("features", message.key, vector, vector["event_time_ms"])
        latency.observe(time.perf_counter() - started)
