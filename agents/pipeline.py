"""The ticks agents: each tick through its partition's pipeline (features, predictions, outcomes,
learning, drift), the step's records published (agents.steps), checkpointed per partition. Ticks come
one a record (the ticks topic) or several (the tick-batches topic, connectors.batching): a batch's
ticks are applied one by one, exactly as single ticks are, with one framework round trip for all."""

from __future__ import annotations

import time

from mode import CrashingSupervisor

from agents.app import Runtime
from agents.checkpoints import PartitionCheckpoints
from agents.steps import finish, finish_released, origin_of, reject
from schemas.codec import DecodeError

STAGE = "ticks"
BATCHES = "tick-batches"


def register(runtime: Runtime, checkpoints: PartitionCheckpoints) -> None:
    codec = runtime.codecs["ticks"]
    latency = runtime.metrics.latency.labels("featurize")

    # An exception that escapes an event (bad input never does: it is dead-lettered) ends the worker
    # instead of Faust restarting the agent in place over a state that may be ahead of its outputs
    # (agents.checkpoints.applying); the next owner resumes from the last checkpoint.
    @runtime.app.agent(runtime.topics["ticks"], name="pipeline", supervisor_strategy=CrashingSupervisor)
    async def pipeline(stream):
        stream = stream.noack()
        async for event, state in checkpoints.unapplied(stream, STAGE):
            message = event.message
            with checkpoints.applying(message.partition):
                started = time.perf_counter()
                try:
                    tick = codec.decode(message.value, message.topic, message.partition, message.offset)
                except DecodeError as exc:
                    latency.observe(time.perf_counter() - started)
                    await reject(runtime, "featurize", "decode_error", str(exc), message)
                else:
                    await finish(runtime, state.on_tick(tick, int(time.time() * 1000), origin_of(message)), message)
                await checkpoints.done(stream, event, STAGE)

    batch_codec, tick_codec = runtime.codecs[BATCHES], runtime.codecs["ticks"]

    @runtime.app.agent(runtime.topics[BATCHES], name="pipeline-batches", supervisor_strategy=CrashingSupervisor)
    async def pipeline_batches(stream):
        stream = stream.noack()
        async for event, state in checkpoints.unapplied(stream, BATCHES):
            message = event.message
            with checkpoints.applying(message.partition):
                started = time.perf_counter()
                try:
                    batch = batch_codec.decode(message.value, message.topic, message.partition, message.offset)
                except DecodeError as exc:
                    latency.observe(time.perf_counter() - started)
                    await reject(runtime, "featurize", "decode_error", str(exc), message)
                else:
                    origin = origin_of(message)
                    now_ms = int(time.time() * 1000)
                    for tick in batch["ticks"]:
                        step = state.on_tick(tick, now_ms, origin)
                        # A refused tick is dead-lettered alone, as a Tick record (replayable onto the
                        # ticks topic), with the batch's topic and offset.
                        own = origin if step.rejection is None else (*origin[:4], tick_codec.encode(tick))
                        await finish_released(runtime, [(step, own), *step.released])
                await checkpoints.done(stream, event, BATCHES)

    window_ms = runtime.pipeline.reorder_ms
    if window_ms > 0:
        quiet_ms = min(window_ms, 2000)

        @runtime.app.timer(interval=0.5, name="reorder-quiet-partitions")
        async def release_quiet_partitions():
            """A reorder window holds the last ticks until newer ones arrive; when none has for
            min(window, 2 s) of wall time (a replay ended, a source went quiet), what it holds is let
            out (and checkpointed)."""
            now_ms = int(time.time() * 1000)
            for partition, state in list(checkpoints.states.items()):
                if partition in checkpoints.in_flight or not len(state.held):
                    continue
                if state.last_arrival_ms is not None and now_ms - state.last_arrival_ms < quiet_ms:
                    continue
                await finish_released(runtime, state.flush(now_ms))
                await checkpoints.checkpoint(partition, force=True)
