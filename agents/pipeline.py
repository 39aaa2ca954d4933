"""The ticks agent: each tick through its partition's pipeline (features, predictions, outcomes,
learning, drift), the step's records published (agents.steps), checkpointed per partition."""

from __future__ import annotations

import time

from agents.app import Runtime
from agents.checkpoints import PartitionCheckpoints
from agents.steps import finish, reject
from schemas.codec import DecodeError

STAGE = "ticks"


def register(runtime: Runtime, checkpoints: PartitionCheckpoints) -> None:
    codec = runtime.codecs["ticks"]
    latency = runtime.metrics.latency.labels("featurize")

    @runtime.app.agent(runtime.topics["ticks"], name="pipeline")
    async def pipeline(stream):
        stream = stream.noack()
        async for event, state in checkpoints.unapplied(stream, STAGE):
            message = event.message
            started = time.perf_counter()
            try:
                tick = codec.decode(message.value, message.topic, message.partition, message.offset)
            except DecodeError as exc:
                latency.observe(time.perf_counter() - started)
                await reject(runtime, "featurize", "decode_error", str(exc), message)
            else:
                await finish(runtime, state.on_tick(tick, int(time.time() * 1000)), message)
            await checkpoints.done(stream, event, STAGE)
