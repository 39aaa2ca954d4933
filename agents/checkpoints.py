"""State that survives restarts and partition moves: one checkpoint per partition pipeline.

Every input partition number has one :class:`streams.pipeline.PartitionPipeline`, fed by the ticks,
external-features and feedback topics (co-partitioned: the same partition number of each). Events
are processed with manual acks: every ``every_events`` events, or ``every_seconds`` when the streams
are quiet, the pipeline is pickled into Checkpoint records on the compacted ``checkpoints`` topic
together with the last offset of each input topic it reflects, signed (HMAC-SHA256, agents.trust),
and only then are those events acked. So no committed offset passes the newest checkpoint, and
external feedback is learned exactly once per checkpointed state, like ticks. The records go to the
checkpoints partition of their input partition's number (:func:`placed`), so that a restore reads
only its own (:func:`read_checkpoints`). Records of a partition found elsewhere (written under the
placement by key hash, or before the topic grew) are deleted with tombstones once a newer checkpoint
of the partition is on its own checkpoints partition: compaction works per partition, so nothing
else ever supersedes them.

A state larger than one record (``PART_BYTES`` compressed; River's forest members grow to tens of
MB) is split into parts, each a signed record keyed ``<stage>:<partition>:<sequence mod 2>:<part>``:
writing checkpoint ``s`` overwrites only parts of ``s - 2``, so the previous complete one survives a
crash in the middle of a write. A checkpoint is restored only when all its parts are present.

Restoring trusts nothing on the topic: an unsigned or forged record, or one whose offsets lie past the
end of their input partitions, is refused (log line, ``livelearn_checkpoints_refused_total``, a dead
letter) and the newest valid checkpoint before it is used, else a fresh state. The state itself is
read through an allowlist (streams.snapshots), never plain pickle. A restore from a checkpoint older
than the group's committed position applies the events in between again, silently, before any new
one (``PartitionCheckpoints._catch_up``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from agents.app import Runtime
from agents.trust import CheckpointRefused, CheckpointSigner, checkpoint_key, offset_problem
from connectors.topic_end import TopicToEnd, committed_offsets, first_offset, read_between
from schemas.codec import DecodeError
from streams import snapshots

log = logging.getLogger("livelearn.checkpoints")

# Valid checkpoints kept per partition while restoring: the newest, and older ones to fall back to.
KEEP_CANDIDATES = 3
# Seconds between two progress lines of a catch-up (PartitionCheckpoints._catch_up).
CATCH_UP_REPORT_S = 10.0
# Checkpoints (complete or not) held per partition while the topic is read: the newest by sequence.
# The topic holds every checkpoint the broker has not compacted yet (agents.topics.COMPACTED_CONFIG),
# and the reader held all of them, state and all, until the end.
KEEP_READING = 2 * KEEP_CANDIDATES + 2
PART_BYTES = 4 * 1024 * 1024


def config_differences(old: Any, new: Any, path: str = "") -> list[str]:
    """``field: old -> new`` for every leaf that differs between two configurations (dataclasses
    field by field, other objects by their attributes, the rest by equality).

    >>> from streams.pipeline import PipelineConfig
    >>> a = PipelineConfig()
    >>> config_differences(a, dataclasses.replace(a, reorder_ms=250))
    ['reorder_ms: 0 -> 250']
    """
    if dataclasses.is_dataclass(old) and type(old) is type(new):
        return [line for f in dataclasses.fields(old)
                for line in config_differences(getattr(old, f.name), getattr(new, f.name), f"{path}{f.name}.")]
    same = vars(old) == vars(new) if hasattr(old, "__dict__") and type(old) is type(new) else old == new
    return [] if same else [f"{path.rstrip('.')}: {old!r} -> {new!r}"]


def part_key(stage: str, partition: int, sequence: int, part: int) -> bytes:
    return f"{stage}:{partition}:{sequence % 2}:{part}".encode()


class CheckpointsUnreadable(RuntimeError):
    """The checkpoints topic could not be read to its end now (the broker is away): try again."""


def broker_away(exc: BaseException) -> bool:
    """Whether a failed checkpoint read is worth trying again: the broker (or a partition's leader) is
    away or slow. Librdkafka marks few plain errors ``retriable()``, so the codes are named here; any
    other error (an invalid topic name, an authorization or authentication failure) will not pass by
    waiting, and the worker says so and stops instead of waiting for ever."""
    if isinstance(exc, CheckpointsUnreadable):
        return True
    from confluent_kafka import KafkaError, KafkaException

    if not isinstance(exc, KafkaException) or not exc.args or not isinstance(exc.args[0], KafkaError):
        return False
    error = exc.args[0]
    return error.retriable() or error.code() in {
        KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE,
        KafkaError._WAIT_COORD, KafkaError._UNKNOWN_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.REQUEST_TIMED_OUT, KafkaError.BROKER_NOT_AVAILABLE,
        KafkaError.NETWORK_EXCEPTION, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_COORDINATOR, KafkaError.KAFKA_STORAGE_ERROR, KafkaError.UNKNOWN_TOPIC_OR_PART,
        # A broker connection torn down while a call waited on it (seen when the broker restarts).
        KafkaError._DESTROY_BROKER}


def placed(partition: int, count: int) -> int:
    """The checkpoints partition that input partition ``partition``'s checkpoints are written to, the
    topic having ``count`` partitions: its own number where the topics are co-partitioned, as
    ``livelearn`` creates them.

    >>> placed(3, 8), placed(9, 8)
    (3, 1)
    """
    return partition % count


Site = tuple[int, bytes]  # (checkpoints partition, key) of a record


class CheckpointsRead(NamedTuple):
    """What :func:`read_checkpoints` found."""

    # Per input partition: its complete valid checkpoints, newest first, each with its whole ``state``.
    valid: dict[int, list[dict]]
    # The records refused, as ``(message, reason)``.
    refused: list[tuple[Any, CheckpointRefused]]
    # Per input partition: where its records lie off its own checkpoints partition (:func:`placed`), for
    # tombstones once a newer checkpoint is on its own (only where the read went there).
    strays: dict[int, set[Site]]


def read_checkpoints(runtime: Runtime, stage: str, inputs: tuple[str, ...], signer: CheckpointSigner,
                     timeout: float = 20.0, of: Iterable[int] | None = None) -> CheckpointsRead:
    """The checkpoints on the topic (blocking; run in an executor).

    With ``of`` (input partitions), the checkpoints of those partitions only, read from the
    checkpoints partitions they are written to (:func:`placed`): a restore reads its own partitions'
    records, and, exactly-once, waits for no open transaction of another worker's partitions (it
    waited for every one before, a killed worker's until that partition's next owner fenced it).
    A partition with none there (it never checkpointed, or only under the earlier placement by key
    hash, or before the topic grew) is looked for in the whole topic, read committed without waiting
    for open transactions: where one hides the newest checkpoint of the earlier placement, the restore
    starts from the one before and applies the events since again (``PartitionCheckpoints._catch_up``).
    Not a partition none of whose input partitions has ever held a record (their end offsets are 0):
    no event of it was applied, so no checkpoint of it can be restored. Such a partition is common (more
    partitions than basis groups), and once one was assigned, every restore read the whole topic."""
    if of is None:
        found = _read(runtime, stage, inputs, signer, timeout, None, stable=True)
        return CheckpointsRead(found.valid, found.refused, found.strays)
    wanted = set(of)
    own = _read(runtime, stage, inputs, signer, timeout, wanted, stable=True)
    valid, refused, strays = own.valid, own.refused, own.strays
    missing = wanted - set(valid) - own.unwritten
    if missing:
        elsewhere = _read(runtime, stage, inputs, signer, timeout, None, stable=not own.topic_partitions)
        seen = {(message.partition(), message.offset()) for message, _ in refused}
        refused += [(message, reason) for message, reason in elsewhere.refused
                    if (message.partition(), message.offset()) not in seen]
        valid.update({p: elsewhere.valid[p] for p in missing if p in elsewhere.valid})
        strays = elsewhere.strays  # the whole topic: every partition's own included
    return CheckpointsRead({p: valid[p] for p in wanted if p in valid}, refused,
                           {p: strays[p] for p in wanted if p in strays})


class _Read(NamedTuple):
    valid: dict[int, list[dict]]
    refused: list[tuple[Any, CheckpointRefused]]
    topic_partitions: int  # the topic's partition count (0 where its metadata was not had: nothing read)
    unwritten: set[int]  # partitions of ``of`` with no record read whose inputs never held one
    strays: dict[int, set[Site]]


def _read(runtime: Runtime, stage: str, inputs: tuple[str, ...], signer: CheckpointSigner, timeout: float,
          of: set[int] | None, stable: bool) -> _Read:
    """:func:`read_checkpoints` of the checkpoints partitions that input partitions ``of`` write to (all:
    None). ``stable``: see connectors.topic_end."""
    from confluent_kafka import TopicPartition

    # (partition, sequence, created_time_ms) -> parts. The time tells two writes of one sequence apart:
    # a write cut short (a crash, a revocation) is followed by the next owner's write of the same
    # sequence, and their parts, merged, read as one incomplete checkpoint where the second has fewer.
    pieces: dict[tuple[int, int, int], dict[int, dict]] = {}
    sequences: dict[int, set[tuple[int, int]]] = {}  # partition -> the (sequence, time) held in ``pieces``
    refused: list[tuple[Any, CheckpointRefused]] = []
    codec = runtime.codecs["checkpoints"]
    prefix = f"{stage}:".encode()
    input_ranges: dict[tuple[str, int], tuple[int, int]] = {}
    with TopicToEnd(runtime.settings.client_config(), runtime.topic_names["checkpoints"], "checkpoint-reader",
                    timeout=timeout, metadata_timeout=timeout, strict=True, stable=stable) as reader:
        topic = runtime.topic_names["checkpoints"]
        metadata = reader.consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        count = len(metadata.partitions) if metadata is not None and metadata.error is None else 0
        if of is not None:
            if not count:
                log.info("%s: the broker does not know %s now: its whole topic is read next", stage, topic)
                return _Read({}, [], 0, set(), {})  # the caller reads the whole topic, strictly
            reader.partitions = frozenset(placed(p, count) for p in of)
        strays: dict[int, set[Site]] = {}
        records = 0
        for message in reader:
            key = message.key() or b""
            if not key.startswith(prefix):
                continue
            if message.value() is None:
                continue  # a tombstone (compaction deletes the key's earlier records, later the tombstone)
            records += 1
            owner = _key_partition(key)
            if count and owner is not None and message.partition() != placed(owner, count):
                strays.setdefault(owner, set()).add((message.partition(), key))
            try:
                record = codec.decode(message.value(), message.topic(), message.partition(), message.offset())
                signer.verify(record)
                if record["stage"] != stage or message.key() != part_key(stage, record["partition"],
                                                                         record["sequence"], record["part"]):
                    raise CheckpointRefused("forged_checkpoint", f"key {message.key()!r} does not match the "
                                                                 "record's stage, partition and part")
                for name in inputs:
                    offset = record["offsets"].get(name, -1)
                    where = (runtime.topic_names[name], record["partition"])
                    if where not in input_ranges:
                        input_ranges[where] = reader.consumer.get_watermark_offsets(TopicPartition(*where),
                                                                                    timeout=timeout)
                    problem = offset_problem(offset, *input_ranges[where])
                    if problem is not None:
                        raise CheckpointRefused("offset_out_of_range", f"{problem} ({where[0]}[{where[1]}])")
            except DecodeError as exc:
                refused.append((message, CheckpointRefused("decode_error", str(exc))))
                continue
            except CheckpointRefused as exc:
                refused.append((message, exc))
                continue
            written = (record["sequence"], record["created_time_ms"])
            pieces.setdefault((record["partition"], *written), {})[record["part"]] = record
            held = sequences.setdefault(record["partition"], set())
            held.add(written)
            if len(held) > KEEP_READING:  # the oldest goes (a late part of one already gone, at once)
                oldest = min(held)
                held.discard(oldest)
                del pieces[(record["partition"], *oldest)]
        unwritten = {partition for partition in (of or set()) - {key[0] for key in pieces}
                     if not _ever_written(reader.consumer, [runtime.topic_names[name] for name in inputs],
                                          partition, timeout)}
        if not reader.complete:
            # Part of the topic only (the broker went away while it was read, or an open transaction hid
            # its newest records): restoring from it could pick an older checkpoint than the newest, or none.
            held = ", ".join(f"partition {p} stable to offset {lso} of {high}"
                             for p, (lso, high) in sorted(reader.unstable.items()))
            raise CheckpointsUnreadable(
                f"{runtime.topic_names['checkpoints']} was not read to its end within {timeout:.0f} s" +
                (f": an open transaction holds it back ({held}); a killed worker's transaction is aborted "
                 "when the next owner of its input partition starts reading, or by the broker after "
                 "LIVELEARN_TRANSACTION_TIMEOUT_S" if held else ""))
    # What the read saw, so that a restore that found no checkpoint can be told from one that found
    # no topic or an empty one (a chaos run's worker, started just after the broker came back, read
    # none of a partition's six checkpoints, and nothing said which).
    log.info("%s: read %s (%s partitions, %s read): %s; %s records of this stage, checkpoints of input "
             "partitions %s", stage, topic, count, "all" if reader.partitions is None else sorted(reader.partitions),
             f"up to offsets {reader.ends}" if reader.ends else "none holds a record", records,
             sorted({key[0] for key in pieces}))
    valid: dict[int, list[dict]] = {}
    for (partition, _, _), parts in pieces.items():
        first = parts.get(0)
        if first is None or set(parts) != set(range(first["parts"])):
            continue  # incomplete: a crash while it was written, or compacted away
        whole = {**first, "state": b"".join(parts[i]["state"] for i in range(first["parts"]))}
        candidates = valid.setdefault(partition, [])
        candidates.append(whole)
        candidates.sort(key=lambda r: (-r["sequence"], -r["created_time_ms"]))
        del candidates[KEEP_CANDIDATES:]
    return _Read(valid, refused, count, unwritten, strays)


def _key_partition(key: bytes) -> int | None:
    """The input partition a checkpoint key names (:func:`part_key`; None: not of that form).

    >>> _key_partition(part_key("pipeline", 7, 3, 0)), _key_partition(b"pipeline:x:0:0")
    (7, None)
    """
    fields = key.split(b":")
    return int(fields[1]) if len(fields) == 4 and fields[1].isdigit() else None


def _ever_written(consumer: Any, topics: list[str], partition: int, timeout: float) -> bool:
    """Whether any of ``topics``' partition ``partition`` has held a record (True where that is not
    known: a partition the broker does not answer for is looked for as before)."""
    from confluent_kafka import KafkaException, TopicPartition

    try:
        return any(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)[1]
                   for topic in topics)
    except KafkaException:
        return True


def _read_batch(config: dict[str, Any], topic: str, partition: int, start: int, stop: int,
                size: int = 500) -> list[Any]:
    """Up to ``size`` records of one partition from ``start``, before ``stop`` (blocking)."""
    reader = read_between(config, topic, partition, start, stop)
    try:
        return list(itertools.islice(reader, size))
    finally:
        reader.close()


class PartitionCheckpoints:
    """Per partition number: the pipeline, the input offsets it reflects, and the events not yet acked."""

    def __init__(self, runtime: Runtime, stage: str, inputs: tuple[str, ...], version: str,
                 factory: Callable[[], Any], every_events: int = 1000, every_seconds: float = 1.0,
                 part_bytes: int = PART_BYTES, configured: Any = None):
        if not 1024 <= part_bytes <= 15 * 1024 * 1024:
            raise ValueError("LIVELEARN_CHECKPOINT_PART_BYTES must be between 1 KiB and 15 MiB (the topic's limit "
                             "is 16 MiB)")
        self.runtime, self.stage, self.inputs, self.version, self.factory = runtime, stage, inputs, version, factory
        # The configuration the worker runs with: a restored state keeps the one it was built with (its
        # models, windows and monitors were made from it), so a difference is said, not hidden.
        self.configured = configured
        self.every_events, self.every_seconds, self.part_bytes = every_events, every_seconds, part_bytes
        self.states: dict[int, Any] = {}
        self.offsets: dict[int, dict[str, int]] = {}
        self.sequences: dict[int, int] = {}
        self.pending: dict[int, list[tuple[Any, Any]]] = {}
        self.last_saved: dict[int, float] = {}
        self.restored: dict[int, list[dict]] | None = None
        # Per partition: its records found off its own checkpoints partition, deleted (tombstones) once a
        # newer checkpoint of it is on its own (see _write).
        self.strays: dict[int, set[Site]] = {}
        # The input partitions ``restored`` answers for (None: all, the whole topic was read).
        self.covered: set[int] | None = None
        # The checkpoints topic's partition count, for placing writes (asked at the first write after a
        # rebalance).
        self._count: int | None = None
        # Partitions with an event between ``unapplied`` handing it out and ``done`` recording it: a
        # checkpoint taken then would hold the event's effect without its offset.
        self.in_flight: dict[int, int] = {}
        # Checkpoints being written, by partition (a revocation waits for them, see settle).
        self.writing: dict[int, int] = {}
        # Partitions whose state may be ahead of what was published: an exception escaped while an event
        # was applied or its checkpoint committed. Never checkpointed again; the worker stops (the agents
        # crash the worker, see agents.pipeline) and the next owner resumes from the last checkpoint.
        self.broken: set[int] = set()
        self._signer: CheckpointSigner | None = None
        self._restoring: asyncio.Lock | None = None
        # Per input: how an agent applies one of its records to a state without publishing anything
        # (``apply(state, value, origin)``), for the events a restore catches up on (see _catch_up).
        self.reapply: dict[str, Callable[[Any, bytes, tuple], None]] = {}
        # Called with (partition, state) once a partition is restored, before its first event is applied:
        # how an agent inspects what a checkpoint brought back (agents.pipeline: models of symbols whose
        # ticks now go to another partition).
        self.on_restored: Callable[[int, Any], None] | None = None
        # Counts revocations: a read that was under way during one is not used (it may predate the
        # last checkpoints of the partitions that moved).
        self._generation = 0
        self._revocations: dict[int, int] = {}

    @property
    def signer(self) -> CheckpointSigner:
        if self._signer is None:
            self._signer = CheckpointSigner(checkpoint_key(self.runtime.settings),
                                            self.runtime.topic_names["checkpoints"])
        return self._signer

    async def load(self, partitions: Iterable[int] = ()) -> None:
        """Read the checkpoints of ``partitions`` and of the input partitions the worker's consumer owns
        (:func:`read_checkpoints`; of every partition where there are none, as at start), waiting out a
        broker that is away (a worker that starts while the broker restarts, or loses it during the
        restore, waits for it as it does later, instead of crashing or starting from a partial read).

        Exactly-once, the transactional producers of those partitions are made first: each fences its
        partition's previous owner, whose open transaction is aborted and who can commit no checkpoint
        after this read. The read itself waits until no open transaction hides a committed record
        (connectors.topic_end, ``stable``): a killed worker's open transaction of another partition, on
        the same checkpoints partition, once hid a newer checkpoint and a chaos run restored from the
        one before it, 200 ticks behind the committed offset. Each input partition's checkpoints now go
        to the checkpoints partition of its number (:func:`placed`), which no other partition's owner
        writes to where the two topics have as many partitions (as livelearn creates them)."""
        loop = asyncio.get_running_loop()
        delay, timeout = 1.0, 20.0
        while True:
            generation = self._generation
            try:
                wanted = set(partitions) | self.runtime.assigned_partitions()
                await self.runtime.fence(wanted)
                found = await loop.run_in_executor(None, read_checkpoints, self.runtime, self.stage, self.inputs,
                                                   self.signer, timeout, wanted or None)
                if generation != self._generation:
                    continue  # partitions moved while it was read: read again
                self.restored, self.covered = found.valid, wanted or None
                for partition, sites in found.strays.items():
                    self.strays.setdefault(partition, set()).update(sites)
                refused = found.refused
                break
            except Exception as exc:
                if not broker_away(exc):
                    raise
                log.warning("%s: checkpoints not readable now (%s); trying again in %.0f s", self.stage, exc, delay)
                await asyncio.sleep(delay)
                # A large checkpoint topic on a slow link may simply need longer than the last try gave it.
                delay, timeout = min(2.0 * delay, 10.0), min(2.0 * timeout, 600.0)
        for message, reason in refused:
            await self.refuse(reason, message.topic(), message.partition(), message.offset(), message.key(),
                              message.value())

    async def refuse(self, reason: CheckpointRefused, topic: str, partition: int, offset: int, key: Any,
                     value: Any) -> None:
        """A checkpoint record that is not restored: logged, counted, dead-lettered (never raises)."""
        self.runtime.metrics.checkpoints_refused.labels(self.stage, reason.code).inc()
        log.error("%s: refused checkpoint %s[%s]@%s: %s", self.stage, topic, partition, offset, reason)
        await self.runtime.dead_letter(self.stage, reason.code, str(reason), topic, partition, offset, key, value)

    async def state(self, partition: int, received: int | None = None) -> Any:
        """The partition's pipeline: the one this worker holds, else restored from the newest usable
        checkpoint and caught up with the events the group has acked since (a new one, caught up the
        same way, where there is no checkpoint to use; not where the newest was written under other
        settings: that partition starts fresh at the group's position). One partition is restored at a
        time: two agents of one partition must not each make their own state.

        None where the partition was revoked since ``received`` (its count of revocations when the
        event asking for it was received; default: now), before or while it was restored. A restore
        that a revocation overtook is not kept: kept, it published for a partition this worker may no
        longer own, checkpointed there under its own numbers beside the new owner's, and was used as it
        stood if the partition came back later, without the events its other owner applied meanwhile."""
        state = self.states.get(partition)
        if state is not None:
            return state
        mark = self.revocations(partition) if received is None else received
        if self._restoring is None:
            self._restoring = asyncio.Lock()
        async with self._restoring:
            state = self.states.get(partition)
            if state is not None:  # another agent restored it while this one waited
                return state
            if self.revocations(partition) != mark:
                return None
            if self.restored is None or (self.covered is not None and partition not in self.covered):
                await self.load({partition})
            read = self.restored or {}
            state, offsets, sequence = await self._restore(partition, mark, read.get(partition, []))
            if self.revocations(partition) != mark:
                log.info("%s: partition %s revoked while it was restored: the restore is not kept", self.stage,
                         partition)
                # Its checkpoints stay in the read for the partition's next restore. Taken off it, a read
                # made after the revocation was not made again, and the partition started new, caught up
                # from the topic's first event and numbering its checkpoints below the newest (a chaos
                # run, 2026-12-07).
                return None
            read.pop(partition, None)  # used: the partition's next restore reads the checkpoints written from here
            self.states[partition], self.offsets[partition], self.sequences[partition] = state, offsets, sequence
            self.last_saved[partition] = time.monotonic()
            if self.on_restored is not None:
                try:
                    self.on_restored(partition, state)
                except Exception:  # a report about the state must not cost the partition its events
                    log.exception("%s: partition %s: the check of its restored state failed", self.stage, partition)
            return state

    def revocations(self, partition: int) -> int:
        """How many times ``partition`` was revoked from this worker (see state and unapplied)."""
        return self._revocations.get(partition, 0)

    def _differences(self, record: dict[str, Any]) -> str:
        """What differs between a checkpoint of another version and this worker's settings, where its
        state can still be read (the version is a checksum: without this a user learns that the models
        were dropped, not which setting dropped them, e.g. a default member list changed by an upgrade)."""
        try:  # a line of a log must not cost the restore: any failure here is "another format"
            config = getattr(snapshots.loads(zlib.decompress(record["state"])), "config", None)
            changed = config_differences(config, self.configured) if config is not None and self.configured else []
        except Exception as exc:
            return f"Its state is of another format ({type(exc).__name__})."
        return f"Changed: {'; '.join(changed)}." if changed else "Its state is of another format."

    async def _restore(self, partition: int, mark: int, candidates: list[dict]) -> tuple[Any, dict[str, int], int]:
        """The state restored from the newest usable of ``candidates`` (the partition's checkpoints read from
        the topic, newest first), the input offsets it reflects and the number of the next checkpoint."""
        # The checkpoints written from here on are numbered above every signed one of the partition on
        # the topic, used or not (unreadable, of another version), so that the next restore reads them
        # first: numbered on from an older one, they sorted below one that could not be used, which was
        # met again at every restore (a version change then started fresh at every restart until the
        # broker compacted the old version's records away).
        highest = max((record["sequence"] for record in candidates), default=0)
        rebuild = True
        for record in candidates:
            if record["version"] != self.version:
                log.warning("%s: partition %s starts fresh, its models and monitors new: its newest checkpoint "
                            "(%s) was written under another configuration (version %s; this worker runs %s). %s "
                            "To keep that state, run with the settings it was written with.", self.stage, partition,
                            record["sequence"], record["version"], self.version, self._differences(record))
                rebuild = False
                break
            try:
                state = snapshots.loads(zlib.decompress(record["state"]))
            except Exception as exc:  # signed but unreadable: fall back to the previous good one
                reason = CheckpointRefused("unreadable_checkpoint", f"{type(exc).__name__}: {exc}")
                await self.refuse(reason, self.runtime.topic_names["checkpoints"], -1, -1,
                                  f"{self.stage}:{partition}".encode(), b"")
                continue
            offsets = {name: record["offsets"].get(name, -1) for name in self.inputs}
            log.info("%s: partition %s restored at offsets %s (checkpoint %s)", self.stage, partition, offsets,
                     record["sequence"])
            changed = config_differences(getattr(state, "config", None), self.configured) if self.configured else []
            if changed:
                log.warning("%s: partition %s was checkpointed under other settings, which stay in effect for it "
                            "until it starts fresh (a new LIVELEARN_APP_ID or topic prefix): %s", self.stage,
                            partition, "; ".join(changed))
            await self._catch_up(partition, state, offsets, mark)
            # The next write must not share this one's key parity (part_key): it would overwrite the
            # parts of the checkpoint restored from, the one to fall back to if that write is cut short.
            return state, offsets, highest + (highest - record["sequence"]) % 2
        state, offsets = self.factory(), dict.fromkeys(self.inputs, -1)
        if rebuild:
            # No checkpoint to use, yet the group may have read the partition: a new state is the oldest
            # checkpoint there is, at offset -1, and is caught up like any older one. A chaos run's worker,
            # started just after the broker came back, read no checkpoint of a partition that had six,
            # started fresh at the group's position (tick 793 of 1,440) and published 200 predictions
            # numbered from tick 1 before it was killed.
            await self._catch_up(partition, state, offsets, mark, fresh=True)
        return state, offsets, highest

    async def _catch_up(self, partition: int, state: Any, offsets: dict[str, int], mark: int,
                        fresh: bool = False) -> None:
        """Apply, without publishing, the events between a restored checkpoint (or a new state, offsets -1,
        where there is none to use) and the group's committed position. There are none when the checkpoint
        is the newest, or the state new and the partition never read: events are acked only once a
        checkpoint holds them. A restore that fell back to an older one (the newest unreadable, refused,
        or of a write cut short) met the group's position past its offsets, and the consumer, which starts
        there, never gave it the events in between: the state went on without them. Their outputs were
        published by the worker that applied them first, so they are applied again silently, as that
        worker's state had them. ``offsets`` are moved on to the group's position; a revocation (``mark``
        no longer the partition's count) ends it, as that restore is not kept."""
        group = getattr(getattr(self.runtime.app, "conf", None), "id", None)
        if group is None or not self.reapply:
            return
        config = self.runtime.settings.client_config()
        names = {name: self.runtime.topic_names[name] for name in self.inputs}
        committed = await self._patiently(f"the group's positions of partition {partition}", committed_offsets,
                                          config, group, [(topic, partition) for topic in names.values()])
        for name, topic in names.items():
            start, stop = offsets[name] + 1, committed.get((topic, partition), -1)
            apply = self.reapply.get(name)
            if stop <= start or apply is None:
                continue
            where = f"{topic}[{partition}]"
            # Offsets before the partition's log start were removed by retention: not there to apply.
            held_from = await self._patiently(where, first_offset, config, topic, partition)
            gone_to, at = min(held_from, stop), max(start, held_from)
            applied, turn = 0, time.perf_counter()
            reported = turn
            # Read in batches, each from the first event not applied yet: a read the broker cuts short is
            # tried again from there, and none is applied twice.
            while at < stop and (batch := await self._patiently(where, _read_batch, config, topic, partition, at,
                                                                 stop)):
                if self.revocations(partition) != mark:
                    return
                for message in batch:
                    apply(state, message.value(), (message.topic(), message.partition(), message.offset(),
                                                   message.key(), message.value()))
                    applied, at = applied + 1, message.offset() + 1
                    if time.perf_counter() - turn > 0.02:  # the other partitions and /healthz meanwhile
                        await asyncio.sleep(0)
                        turn = time.perf_counter()
                        if turn - reported >= CATCH_UP_REPORT_S:
                            # A partition with no checkpoint to use replays all its topic holds: minutes on a
                            # long history, with no event of it handled meanwhile.
                            log.info("%s: partition %s catching up on %s: at offset %s of %s, %s events applied "
                                     "again so far", self.stage, partition, topic, at, stop, applied)
                            reported = turn
            offsets[name] = stop - 1
            if not applied and gone_to <= start:
                continue  # offsets without records (transactions' commit markers)
            self.runtime.metrics.model_events.labels("CAUGHT_UP").inc(applied)
            behind = "with no checkpoint it could use, behind" if fresh else "restored from a checkpoint behind"
            log.warning("%s: partition %s %s the group's position on %s (offset %s, position %s): %s events "
                        "applied again without publishing%s", self.stage, partition, behind, topic, start - 1, stop,
                        applied, f"; offsets {start}-{gone_to - 1} are no longer in the topic and stay unapplied"
                        if gone_to > start else "")

    async def _patiently(self, what: str, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)`` in an executor, tried again while the broker is away or slow."""
        delay = 1.0
        while True:
            try:
                return await asyncio.get_running_loop().run_in_executor(None, call, *args)
            except Exception as exc:
                if not isinstance(exc, TimeoutError) and not broker_away(exc):
                    raise
                log.warning("%s: %s not readable now (%s); trying again in %.0f s", self.stage, what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(2.0 * delay, 10.0)

    async def unapplied(self, stream, input_stage: str):
        """The events of a manual-ack stream that the partition's state has not seen, with that state;
        events at or below the restored offset of their topic are acked and skipped here."""
        async for event in stream.events():
            message = event.message
            received = self.revocations(message.partition)
            state = await self.state(message.partition, received)
            if self.revocations(message.partition) != received:
                # Revoked while this event waited for its state: neither applied nor acked. Faust drops
                # the events it fetched before a rebalance and the partition's next owner, this worker
                # again perhaps, reads on from the group's position, this event included.
                continue
            if message.offset <= self.offsets.get(message.partition, {}).get(input_stage, -1):
                await stream.ack(event)
                continue
            partition = message.partition
            self.in_flight[partition] = self.in_flight.get(partition, 0) + 1
            try:
                yield event, state
            finally:
                if self.in_flight[partition] <= 1:
                    del self.in_flight[partition]
                else:
                    self.in_flight[partition] -= 1

    def owns(self, partition: int, state: Any) -> Callable[[], bool]:
        """Whether ``partition`` is still this worker's with ``state`` (not revoked since, nor revoked and
        restored again): an event's outputs are published only while it is (``Runtime.publish``)."""
        return lambda: self.states.get(partition) is state

    @contextmanager
    def applying(self, partition: int) -> Iterator[None]:
        """Around one event's processing in an agent: an exception that escapes it (a broker refusing a
        transaction, a bug) leaves the partition's state possibly ahead of its published outputs, so
        the partition is marked broken before the exception goes on to crash the worker. Before this,
        Faust restarted the agent in place and its next checkpoint recorded that state: the failed
        event's outputs were lost (and in one broker outage test the restarted agent stalled)."""
        try:
            yield
        except Exception as exc:
            self.broke(partition, exc)
            raise

    def withhold(self, partitions: Iterable[int]) -> None:
        """Checkpoint nothing more of ``partitions`` or of any partition held now: the worker is about to
        stop because what it applies may be wrong, so the next owner applies those events again."""
        self.broken.update(partitions)
        self.broken.update(self.states)

    def broke(self, partition: int, exc: BaseException) -> None:
        if partition not in self.broken:
            self.broken.add(partition)
            self.runtime.metrics.model_events.labels("BROKEN_PARTITION").inc()
            log.error("%s: partition %s: %r while applying an event or committing its checkpoint; its state is "
                      "not checkpointed again and the worker stops (a restart resumes from the last checkpoint)",
                      self.stage, partition, exc)

    async def done(self, stream, event, input_stage: str, state: Any) -> None:
        """Record an event applied to ``state`` (the one ``unapplied`` gave with it); checkpoint and ack
        when due."""
        partition, offset = event.message.partition, event.message.offset
        if self.states.get(partition) is not state:
            # Revoked while this event was in flight (and perhaps assigned again since, with a state
            # restored from its checkpoint that has not seen the event): the owner re-applies it.
            return
        self.offsets[partition][input_stage] = offset
        pending = self.pending.setdefault(partition, [])
        pending.append((stream, event))
        # Not while another agent's event of the partition is half-way (suspended while its outputs
        # are published): its effect would be checkpointed without its offset, and a restore would
        # apply it twice. That event's own ``done`` (or the quiet timer) checkpoints these.
        if len(pending) >= self.every_events and self.in_flight.get(partition, 0) <= 1:
            await self.checkpoint(partition)

    async def checkpoint(self, partition: int, flush_timeout: float | None = None, force: bool = False) -> None:
        """Write the partition's checkpoint when events are waiting for it (or ``force``: its state
        changed without an input event, e.g. a reorder window let ticks out)."""
        pending = self.pending.get(partition)
        if (not pending and not force) or partition not in self.states or partition in self.broken:
            return
        pending = pending or []
        # Swap the pending list and pickle the state before any await: the agents (or the timer) may
        # process more events while the checkpoint is being delivered; those belong to the next one
        # (exactly-once: their outputs wait for the next transaction, runtime.begin_commit).
        self.pending[partition] = []
        sequence = self.sequences.get(partition, 0) + 1
        self.sequences[partition] = sequence
        offsets = dict(self.offsets[partition])
        state = self.states[partition]
        pickled = snapshots.dumps(state)
        self.last_saved[partition] = time.monotonic()
        self.runtime.begin_commit(partition)
        self.writing[partition] = self.writing.get(partition, 0) + 1
        try:
            written = await self._write(partition, sequence, offsets, pickled, flush_timeout,
                                        self.owns(partition, state))
        except Exception as exc:
            self.broke(partition, exc)
            raise
        finally:
            if self.writing[partition] <= 1:
                del self.writing[partition]
            else:
                self.writing[partition] -= 1
            self.runtime.end_commit(partition)
        if not written:
            log.warning("%s: partition %s revoked while its checkpoint %s was written: not written (the next owner "
                        "resumes from the one before)", self.stage, partition, sequence)
            return
        self.runtime.metrics.model_events.labels("CHECKPOINT").inc()
        for stream, event in pending:
            await stream.ack(event)

    async def _write(self, partition: int, sequence: int, offsets: dict[str, int], pickled: bytes,
                     flush_timeout: float | None, owned: Callable[[], bool]) -> bool:
        """False, with nothing more written, once the partition is revoked (``owned``); under exactly-once
        the open transaction is then left to the next owner's fencing, which aborts it."""
        # The pickle is the consistent snapshot; compressing it (about as long again for a learner's
        # megabyte) runs in a thread (zlib releases the GIL) while the loop serves the next events.
        state = await asyncio.get_running_loop().run_in_executor(None, zlib.compress, pickled, 1)
        if not self.runtime.exactly_once and not await self.runtime.deliver_outputs(give_up_after=flush_timeout):
            # At-least-once: the outputs of these events are on the broker before the checkpoint that
            # says they were applied is even produced. One flush after both was not enough: records for
            # different partitions are retried independently (a restarted broker takes leadership back
            # partition by partition), so the checkpoint could land while a prediction was still being
            # retried, and a SIGKILL then lost that prediction for good. (The chaos test once ended with
            # 224 predictions missing although every tick had been checkpointed; this is the one path
            # found that allows it.)
            raise TimeoutError(f"outputs before checkpoint {sequence} of partition {partition} not delivered "
                               f"in {flush_timeout} s")
        size = self.part_bytes
        pieces = [state[i:i + size] for i in range(0, len(state), size)] or [b""]
        to_partition = await self.placement(partition)
        created = int(time.time() * 1000)
        for part, piece in enumerate(pieces):
            record = {
                "stage": self.stage, "partition": partition, "offset": offsets.get(self.inputs[0], -1),
                "offsets": offsets, "version": self.version, "sequence": sequence, "created_time_ms": created,
                "part": part, "parts": len(pieces), "state": piece,
            }
            record["signature"] = self.signer.sign(record)
            if not await self.runtime.publish("checkpoints", part_key(self.stage, partition, sequence, part), record,
                                              partition=partition, owned=owned, to_partition=to_partition):
                return False
        # The outputs of these events, and the checkpoint, are on the broker before the events are acked
        # (waiting out a broker outage, however long, unless a bound is given); exactly-once: committed
        # in the partition's transaction.
        if not owned():
            return False
        # Deleted only with a newer checkpoint on the partition's own checkpoints partition: exactly-once in
        # its transaction, else once it is delivered (a tombstone that landed while a part of it did not
        # would leave the partition nothing to restore). Never a key where this write just put it.
        strays = {site for site in self.strays.get(partition, ()) if site[0] != to_partition}
        if strays and self.runtime.exactly_once and not await self._tombstones(partition, strays, owned):
            return False
        if self.runtime.exactly_once:
            delivered = await self.runtime.commit_partition(partition, timeout=flush_timeout)
        else:
            delivered = await self.runtime.deliver_outputs(give_up_after=flush_timeout)
        if not delivered:
            raise TimeoutError(f"checkpoint {sequence} of partition {partition} not delivered in {flush_timeout} s")
        self.runtime.metrics.checkpoint_bytes.set(len(state))
        if strays and not self.runtime.exactly_once:
            if not await self._tombstones(partition, strays, owned):
                return True  # the checkpoint is delivered; the next owner deletes them
            await self.runtime.deliver_outputs(give_up_after=flush_timeout)
        self.strays.pop(partition, None)
        return True

    async def _tombstones(self, partition: int, sites: set[Site], owned: Callable[[], bool]) -> bool:
        """Tombstones for ``partition``'s records at ``sites``: compaction then deletes them."""
        for to_partition, key in sorted(sites):
            if not await self.runtime.publish("checkpoints", key, None, partition=partition, owned=owned,
                                              to_partition=to_partition):
                return False
        log.info("%s: partition %s: %d checkpoint records off its own checkpoints partition deleted", self.stage,
                 partition, len(sites))
        return True

    async def placement(self, partition: int) -> int:
        """The checkpoints partition that ``partition``'s checkpoints go to (:func:`placed`). The topic's
        partition count is asked once after each rebalance, waiting out a broker that is away as the
        write itself does."""
        if self._count is None:
            self._count = await self._patiently("the checkpoints topic's partition count", self._partition_count)
        return placed(partition, self._count)

    def _partition_count(self) -> int:
        topic = self.runtime.topic_names["checkpoints"]
        metadata = self.runtime.producer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            why = f" ({metadata.error})" if metadata is not None and metadata.error is not None else ""
            raise CheckpointsUnreadable(f"no partitions of {topic} known now{why}")
        return len(metadata.partitions)

    async def checkpoint_quiet(self) -> None:
        now = time.monotonic()
        for partition, pending in list(self.pending.items()):
            # Not while an event of the partition is half-way: its effect would be checkpointed
            # without its offset.
            if pending and partition not in self.in_flight and now - self.last_saved.get(partition, 0.0) >= self.every_seconds:
                await self.checkpoint(partition)

    async def settle(self, partitions: set[int] | None = None, timeout: float = 10.0) -> bool:
        """Checkpoint (and so ack) every event applied so far in ``partitions`` (default: all owned), once
        no event of theirs is half-way through an agent; for a graceful stop and for partitions being
        revoked. False when that did not finish within ``timeout`` seconds (the events after the last
        checkpoint are then re-applied by the next owner: at-least-once, nothing lost)."""
        wanted = set(self.states) if partitions is None else partitions & set(self.states)
        deadline = time.monotonic() + timeout
        # A checkpoint being written (the quiet timer's) holds events this one would not: it is let finish.
        while wanted & (set(self.in_flight) | set(self.writing)):
            if time.monotonic() >= deadline:
                log.warning("%s: partitions %s still busy after %.0f s; not checkpointed", self.stage,
                            sorted(wanted & (set(self.in_flight) | set(self.writing))), timeout)
                return False
            await asyncio.sleep(0.005)
        try:
            for partition in sorted(wanted):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                await asyncio.wait_for(self.checkpoint(partition, flush_timeout=remaining), timeout=remaining)
        except TimeoutError:
            log.warning("%s: final checkpoint not delivered within %.0f s", self.stage, timeout)
            return False
        return not wanted & self.broken  # a broken partition is never checkpointed

    def forget(self, partitions: set[int]) -> None:
        """After a revocation: the next owner restores from the checkpoint."""
        for partition in partitions:
            self.states.pop(partition, None)
            self.offsets.pop(partition, None)
            self.pending.pop(partition, None)
            self.broken.discard(partition)  # restored from its last checkpoint if it comes back
            self.strays.pop(partition, None)  # its next owner's to delete: it may write there meanwhile
            self._revocations[partition] = self.revocations(partition) + 1
        self.runtime.drop_partition_producers(partitions)
        self.restored = None
        self._count = None
        self._generation += 1
