"""State that survives restarts and partition moves: per-partition checkpoints with their offsets.

A stage keeps its pure state (feature engines, learners) per input partition. Events are processed
with manual acks: every ``every_events`` events, or ``every_seconds`` when the stream is quiet, the
partition's state is pickled into a Checkpoint record on the compacted ``checkpoints`` topic (key
``<stage>:<partition>``) together with the last input offset it reflects, signed (HMAC-SHA256, see
agents.trust), and only then are those events acked. So the committed offset never passes the newest
checkpoint.

Restoring trusts nothing on the topic: an unsigned or forged record, or one whose offset lies past the
end of its input partition, is refused (log line, ``livelearn_checkpoints_refused_total``, a dead
letter) and the newest valid checkpoint before it is used, else a fresh state. The state itself is
read through an allowlist (streams.snapshots), never plain pickle.

On the first event of a partition after start or reassignment, the stage reads the partition's latest
checkpoint and skips input at or below its offset (Faust may resume a little earlier, since commits
trail acks). The result: every input is applied to the state exactly once, on any worker, and
replays after a crash give the same outputs as an uninterrupted run (outputs in between may be
published twice: at-least-once, with deterministic ids).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from collections.abc import Callable
from typing import Any

from agents.app import app, avro, dead_letter_record, flush_outputs, metrics, publish, settings
from agents.trust import CheckpointRefused, CheckpointSigner, checkpoint_key, offset_problem
from schemas.codec import DecodeError
from streams import snapshots

log = logging.getLogger("livelearn.checkpoints")


# Valid checkpoints kept per partition while restoring: the newest, and older ones to fall back to
# should the newest fail to load.
KEEP_CANDIDATES = 3


def read_latest_checkpoints(stage: str, input_stage: str, signer: CheckpointSigner, timeout: float = 20.0
                            ) -> tuple[dict[int, list[dict]], list[tuple[Any, CheckpointRefused]]]:
    """Per partition of ``stage``: its valid checkpoints, newest first (blocking; run in an executor),
    and the records refused, as ``(message, reason)``.

    A record is valid when its signature verifies, its key names the stage and partition it
    carries, and its offset lies inside the input partition (``input_stage``'s topic)."""
    from confluent_kafka import Consumer, TopicPartition

    topic = settings.topic("checkpoints")
    input_topic = settings.topic(input_stage)
    consumer = Consumer({**settings.client_config(), "group.id": f"checkpoint-reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    valid: dict[int, list[dict]] = {}
    refused: list[tuple[Any, CheckpointRefused]] = []
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return valid, refused
        ends = {}
        partitions = []
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
                partitions.append(TopicPartition(topic, p, low))
        if not partitions:
            return valid, refused
        consumer.assign(partitions)
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        codec = avro["checkpoints"]
        prefix = f"{stage}:".encode()
        input_ranges: dict[int, tuple[int, int]] = {}
        while len(done) < len(ends) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            if message.offset() + 1 >= ends[message.partition()]:
                done.add(message.partition())
            if not (message.key() or b"").startswith(prefix):
                continue
            try:
                record = codec.decode(message.value(), message.topic(), message.partition(), message.offset())
                signer.verify(record)
                if record["stage"] != stage or message.key() != f"{stage}:{record['partition']}".encode():
                    raise CheckpointRefused("forged_checkpoint", f"key {message.key()!r} does not match the "
                                                                 f"record's stage and partition")
                if record["partition"] not in input_ranges:
                    input_ranges[record["partition"]] = consumer.get_watermark_offsets(
                        TopicPartition(input_topic, record["partition"]), timeout=timeout)
                problem = offset_problem(record["offset"], *input_ranges[record["partition"]])
                if problem is not None:
                    raise CheckpointRefused("offset_out_of_range", f"{problem} ({input_topic}[{record['partition']}])")
            except DecodeError as exc:
                refused.append((message, CheckpointRefused("decode_error", str(exc))))
                continue
            except CheckpointRefused as exc:
                refused.append((message, exc))
                continue
            candidates = valid.setdefault(record["partition"], [])
            candidates.append(record)
            candidates.sort(key=lambda r: -r["sequence"])
            del candidates[KEEP_CANDIDATES:]
    finally:
        consumer.close()
    return valid, refused


class PartitionCheckpoints:
    """Per-partition state, offsets and pending (un-acked) events of one stage."""

    def __init__(self, stage: str, input_stage: str, version: str, factory: Callable[[], Any],
                 every_events: int = 1000, every_seconds: float = 1.0):
        self.stage, self.input_stage, self.version, self.factory = stage, input_stage, version, factory
        self.every_events, self.every_seconds = every_events, every_seconds
        self.states: dict[int, Any] = {}
        self.offsets: dict[int, int] = {}
        self.sequences: dict[int, int] = {}
        self.pending: dict[int, list[tuple[Any, Any]]] = {}
        self.last_saved: dict[int, float] = {}
        self.restored: dict[int, list[dict]] | None = None
        self._signer: CheckpointSigner | None = None

    @property
    def signer(self) -> CheckpointSigner:
        if self._signer is None:
            self._signer = CheckpointSigner(checkpoint_key(settings), settings.topic("checkpoints"))
        return self._signer

    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        self.restored, refused = await loop.run_in_executor(None, read_latest_checkpoints, self.stage,
                                                            self.input_stage, self.signer)
        for message, reason in refused:
            await self.refuse(reason, message.topic(), message.partition(), message.offset(), message.key(),
                              message.value())

    async def refuse(self, reason: CheckpointRefused, topic: str, partition: int, offset: int, key: Any,
                     value: Any) -> None:
        """A checkpoint record that is not restored: logged, counted, dead-lettered (never raises)."""
        metrics.checkpoints_refused.labels(self.stage, reason.code).inc()
        log.error("%s: refused checkpoint %s[%s]@%s: %s", self.stage, topic, partition, offset, reason)
        record = dead_letter_record(self.stage, reason.code, str(reason), topic, partition, offset, key, value)
        try:
            await publish("dead-letters", record["key"], record)
        except Exception:
            log.exception("could not dead-letter a refused checkpoint")

    async def state(self, partition: int) -> Any:
        state = self.states.get(partition)
        if state is not None:
            return state
        if self.restored is None:
            await self.load()
        for record in (self.restored or {}).pop(partition, []):
            if record["version"] != self.version:
                log.warning("%s: ignoring checkpoint of version %s (running %s)", self.stage, record["version"],
                            self.version)
                break
            try:
                state = snapshots.loads(zlib.decompress(record["state"]))
            except Exception as exc:  # signed but unreadable: fall back to the previous good one
                reason = CheckpointRefused("unreadable_checkpoint", f"{type(exc).__name__}: {exc}")
                await self.refuse(reason, settings.topic("checkpoints"), -1, -1,
                                  f"{self.stage}:{partition}".encode(), b"")
                continue
            self.offsets[partition] = record["offset"]
            self.sequences[partition] = record["sequence"]
            log.info("%s: partition %s restored at offset %s (checkpoint %s)", self.stage, partition,
                     record["offset"], record["sequence"])
            break
        if state is None:
            state = self.factory()
            self.offsets[partition] = -1
            self.sequences[partition] = 0
        self.states[partition] = state
        self.last_saved[partition] = time.monotonic()
        return state

    def already_applied(self, partition: int, offset: int) -> bool:
        return offset <= self.offsets.get(partition, -1)

    async def unapplied(self, stream):
        """The events of a manual-ack stream that this partition's state has not seen, with that state.

        Events at or below the restored checkpoint's offset are acked and skipped here.
        """
        async for event in stream.events():
            message = event.message
            state = await self.state(message.partition)
            if self.already_applied(message.partition, message.offset):
                await stream.ack(event)
                continue
            yield event, state

    async def done(self, stream, event, partition: int, offset: int) -> None:
        """Record an applied event; checkpoint and ack when due."""
        if partition not in self.states:
            return  # revoked while this event was in flight: the next owner re-applies it
        self.offsets[partition] = offset
        pending = self.pending.setdefault(partition, [])
        pending.append((stream, event))
        if len(pending) >= self.every_events:
            await self.checkpoint(partition)

    async def checkpoint(self, partition: int) -> None:
        pending = self.pending.get(partition)
        if not pending or partition not in self.states:
            return
        # Swap the pending list and pickle the state before any await: the agent (or the timer) may
        # process more events while the checkpoint is being delivered; those belong to the next one.
        self.pending[partition] = []
        sequence = self.sequences.get(partition, 0) + 1
        self.sequences[partition] = sequence
        offset = self.offsets[partition]
        pickled = snapshots.dumps(self.states[partition])
        self.last_saved[partition] = time.monotonic()
        # The pickle is the consistent snapshot; compressing it (about as long again for a learner's
        # megabyte) runs in a thread (zlib releases the GIL) while the loop serves the next events.
        state = await asyncio.get_running_loop().run_in_executor(None, zlib.compress, pickled, 1)
        record = {
            "stage": self.stage, "partition": partition, "offset": offset, "version": self.version,
            "sequence": sequence, "created_time_ms": int(time.time() * 1000), "state": state,
        }
        record["signature"] = self.signer.sign(record)
        await publish("checkpoints", f"{self.stage}:{partition}".encode(), record)
        await flush_outputs()  # the outputs of these events, and the checkpoint, are on the broker
        metrics.model_events.labels("CHECKPOINT").inc()
        for stream, event in pending:
            await stream.ack(event)

    async def checkpoint_quiet(self) -> None:
        now = time.monotonic()
        for partition, pending in list(self.pending.items()):
            if pending and now - self.last_saved.get(partition, 0.0) >= self.every_seconds:
                await self.checkpoint(partition)

    def forget(self, partitions: set[int]) -> None:
        """After a revocation: the next owner restores from the checkpoint."""
        for partition in partitions:
            self.states.pop(partition, None)
            self.offsets.pop(partition, None)
            self.pending.pop(partition, None)
        self.restored = None


def register_timer(checkpoints: PartitionCheckpoints) -> None:
    @app.timer(interval=max(0.2, checkpoints.every_seconds / 2), name=f"checkpoint-{checkpoints.stage}")
    async def _checkpoint_quiet_partitions():
        await checkpoints.checkpoint_quiet()
