"""learn: external feedback -> learning on the features used at prediction time.

Market outcomes and dataset labels (sources in ``IN_LINE_SOURCES``) are learned in line by the predict
stage; this agent takes the feedback that trading systems or people send about a prediction id. Its
offsets are committed by Faust, not with the model checkpoints: after a crash, external feedback near
the crash may be learned twice or not at all (market outcomes are exact).
"""

from __future__ import annotations

import logging

from agents.app import app, avro, dead_letter, metrics, publish, topics
from agents.predict import find_learner, model_event_outputs
from schemas.codec import DecodeError
from streams.learning import IN_LINE_SOURCES, UnknownPrediction

log = logging.getLogger("livelearn.learn")
STAGE = "learn"


@app.agent(topics["feedback"])
async def learn(stream):
    codec = avro["feedback"]
    events = metrics.events.labels(STAGE)
    async for event in stream.events():
        message = event.message
        try:
            feedback = codec.decode(message.value, message.topic, message.partition, message.offset)
            if feedback["source"] in IN_LINE_SOURCES:
                continue
            learner = find_learner(feedback["symbol"])
            if learner is None:
                raise UnknownPrediction(f"no model for symbol {feedback['symbol']!r} on this worker")
            decided = learner.learn_feedback(feedback)
            events.inc()
            for stage, key, record, timestamp_ms in model_event_outputs(learner, decided, message.key):
                await publish(stage, key, record, timestamp_ms)
        except DecodeError as exc:
            await dead_letter(message, STAGE, "decode_error", str(exc))
        except UnknownPrediction as exc:
            await dead_letter(message, STAGE, "unknown_prediction", str(exc.args[0]))
        except Exception as exc:
            log.exception("learn failed on %s[%s]@%s", message.topic, message.partition, message.offset)
            await dead_letter(message, STAGE, "internal_error", f"{type(exc).__name__}: {exc}")
