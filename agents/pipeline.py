"""The ticks agents: each tick through its partition's pipeline (features, predictions, outcomes,
learning, drift), the step's records published (agents.steps), checkpointed per partition. Ticks come
one a record (the ticks topic) or several (the tick-batches topic, connectors.batching): a batch's
ticks are applied one by one, exactly as single ticks are, with one framework round trip for all."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mode import CrashingSupervisor

from agents.app import Runtime
from agents.checkpoints import PartitionCheckpoints
from agents.steps import Owned, batch_steps, finish, finish_released, origin_of, reject, silently
from schemas.codec import DecodeError
from schemas.keys import kafka_partition
from streams.ticks import is_symbol

STAGE = "ticks"
BATCHES = "tick-batches"
MAX_SYMBOLS = 100_000  # keys remembered (a flood of made-up symbols must not grow them without end)
# A tick-batches record may hold thousands of ticks (an outside producer's, up to the broker's record
# limit): seconds of work. Its agent gives the event loop back this often, so that /healthz, /metrics
# and the other agents are served meanwhile. Safe for the checkpoints: none is written while an event
# of the partition is half-way (agents.checkpoints.done).
TURN_S = 0.02
log = logging.getLogger("livelearn.pipeline")


def register(runtime: Runtime, checkpoints: PartitionCheckpoints) -> None:
    latency = runtime.metrics.latency.labels("featurize")
    tick_codec = runtime.codecs[STAGE]

    keys: dict[str, bytes] = {}  # symbol -> the key its ticks should carry
    warned: set[str] = set()

    def check_key(symbol: Any, key: bytes | None, stage: str) -> None:
        """A tick applies whatever its key, but a symbol keyed otherwise than by its basis group may be
        split between partitions (two models of one symbol, neither complete), and its group's pairs
        are not seen side by side: counted, and said once per symbol."""
        want = keys.get(symbol) if isinstance(symbol, str) else None
        if want is None:
            if not is_symbol(symbol):
                return  # refused by the pipeline, with its reason
            if len(keys) > MAX_SYMBOLS:
                keys.clear()
            want = keys[symbol] = runtime.settings.partition_key(symbol).encode()
        if key != want:
            runtime.metrics.misrouted.labels(stage).inc()
            if symbol not in warned and len(warned) < MAX_SYMBOLS:
                warned.add(symbol)
                log.warning("%s: a tick of %s keyed %r, not %r (its basis group, schemas.keys): applied, but a "
                            "symbol keyed otherwise may be split between partitions; counted on "
                            "livelearn_misrouted_ticks_total (said once per symbol)", stage, symbol, key, want)

    stranded: set[str] = set()

    def models_elsewhere(partition: int, state: Any) -> None:
        """A restored partition holding models of symbols whose ticks now go to another partition: the
        input topics were grown (or the basis groups changed) while no worker ran, so no rebalance said
        it (agents.web). Those symbols start new models where their ticks go now, and these stay here
        unused: said as an error, counted once per symbol."""
        count = runtime.app.consumer.topic_partitions(runtime.topic_names[STAGE])
        if not count:
            return  # the assignment's metadata does not list the topic: nothing to compare with
        now = {symbol: kafka_partition(runtime.settings.partition_key(symbol).encode(), count)
               for symbol in getattr(state, "learners", ()) if symbol not in stranded}
        new = sorted(symbol for symbol, placed in now.items() if placed != partition)
        if not new:
            return
        if len(stranded) < MAX_SYMBOLS:
            stranded.update(new)
        runtime.metrics.stranded.inc(len(new))
        shown = ", ".join(f"{symbol} (now {now[symbol]})" for symbol in new[:20]) + (
            f" and {len(new) - 20} more" if len(new) > 20 else "")
        log.error("partition %s was restored with the models of %d symbol(s) whose ticks now go to another of the "
                  "input topics' %d partitions: %s. The input topics were grown, or LIVELEARN_BASIS_GROUPS changed, "
                  "since those models were checkpointed; the symbols start new models where their ticks go, and "
                  "these stay unused in this partition's checkpoints. Counted on livelearn_models_stranded_total",
                  partition, len(new), count, shown)

    checkpoints.on_restored = models_elsewhere

    def ticks_agent(stage: str, name: str, apply: Callable[[Any, dict, Any, Owned], Awaitable[None]]) -> None:
        """An agent of one ticks topic: decode each record with the stage's codec (a record that does
        not decode is dead-lettered), ``apply`` it to its partition's pipeline, record it as done.
        An exception that escapes an event (bad input never does: it is dead-lettered) ends the worker
        instead of Faust restarting the agent in place over a state that may be ahead of its outputs
        (agents.checkpoints.applying); the next owner resumes from the last checkpoint."""
        codec = runtime.codecs[stage]

        @runtime.app.agent(runtime.topics[stage], name=name, supervisor_strategy=CrashingSupervisor)
        async def agent(stream):
            stream = stream.noack()
            async for event, state in checkpoints.unapplied(stream, stage):
                message = event.message
                owned = checkpoints.owns(message.partition, state)
                with checkpoints.applying(message.partition):
                    started = time.perf_counter()
                    try:
                        record = codec.decode(message.value, message.topic, message.partition, message.offset)
                    except DecodeError as exc:
                        latency.observe(time.perf_counter() - started)
                        await reject(runtime, "featurize", "decode_error", str(exc), message, owned)
                    else:
                        await apply(state, record, message, owned)
                    await checkpoints.done(stream, event, stage, state)

    async def one_tick(state: Any, tick: dict, message: Any, owned: Owned) -> None:
        check_key(tick.get("symbol"), message.key, STAGE)
        await finish(runtime, state.on_tick(tick, int(time.time() * 1000), origin_of(message)), message, owned)

    async def batch_of_ticks(state: Any, batch: dict, message: Any, owned: Owned) -> None:
        for symbol in {tick.get("symbol") for tick in batch["ticks"]}:
            check_key(symbol, message.key, BATCHES)
        turn = time.perf_counter()
        for step, origin in batch_steps(state, batch["ticks"], int(time.time() * 1000), origin_of(message),
                                        tick_codec.encode):
            await finish_released(runtime, [(step, origin), *step.released], owned)
            if time.perf_counter() - turn > TURN_S:
                await asyncio.sleep(0)
                if not owned():
                    # Revoked meanwhile (a revocation waits for a half-way event only so long,
                    # LIVELEARN_STOP_TIMEOUT_S): the next owner applies the whole batch from its
                    # checkpoint, and this worker publishes nothing more for the partition.
                    return
                turn = time.perf_counter()

    ticks_agent(STAGE, "pipeline", one_tick)
    ticks_agent(BATCHES, "pipeline-batches", batch_of_ticks)

    def tick_again(state: Any, tick: dict, origin: tuple) -> None:
        state.on_tick(tick, int(time.time() * 1000), origin)

    def batch_again(state: Any, batch: dict, origin: tuple) -> None:
        for _ in batch_steps(state, batch["ticks"], int(time.time() * 1000), origin, tick_codec.encode):
            pass

    # A restore behind the group's position applies the events in between again, publishing nothing
    # (agents.checkpoints._catch_up).
    checkpoints.reapply[STAGE] = silently(tick_codec, tick_again)
    checkpoints.reapply[BATCHES] = silently(runtime.codecs[BATCHES], batch_again)

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
                await finish_released(runtime, state.flush(now_ms), checkpoints.owns(partition, state))
                # Not if an event of the partition began meanwhile (agents.checkpoints.done): the
                # partition's next checkpoint holds what was let out.
                if partition not in checkpoints.in_flight:
                    await checkpoints.checkpoint(partition, force=True)
