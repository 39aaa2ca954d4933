"""The worker's HTTP endpoints (/metrics, /healthz, /readyz) and its timers (consumer lag, quiet
partitions' checkpoints, readiness once the checkpoints are read)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents.app import Runtime
from agents.checkpoints import PartitionCheckpoints
from agents.topics import NotCoPartitioned, copartitioned, input_partition_counts

log = logging.getLogger("livelearn.worker")


def register(runtime: Runtime, checkpoints: PartitionCheckpoints) -> None:
    app, metrics = runtime.app, runtime.metrics

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web, request):
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(web, request):
        ready = runtime.serving and not app.rebalancing
        if ready:
            return web.json({"ready": True})
        # Why not, for whoever waits on it (an orchestrator's probe, a test that gave up).
        return web.json({"ready": False, "state_loaded": runtime.ready, "rebalancing": bool(app.rebalancing),
                         "outputs_failing": runtime.broker_away_since is not None,
                         "broker_unanswered": runtime.broker_unanswered_since is not None}, status=503)

    @app.task
    async def load_state_then_ready():
        """Ready only once the checkpoints have been read."""
        await checkpoints.load()
        # What is loaded by now (torch, River, Faust, the restored models) lives as long as the worker:
        # out of the collector's sight, a full collection no longer walks it. Measured (bench/latency.py,
        # a fresh worker): a full collection stopped the event loop for 110-150 ms over ~300,000 objects,
        # 3-4 ms once frozen.
        gc.freeze()
        runtime.ready = True
        metrics.ready.set(1 if runtime.serving else 0)

    probe_s = runtime.settings.worker.broker_probe_s

    @app.timer(interval=max(probe_s, 0.5), name="probe-broker")
    async def probe_broker():
        """Readiness of a worker with nothing to publish: without this an idle worker read ready through a
        whole broker outage (only failed outputs made it not ready)."""
        if probe_s <= 0:
            return
        started = time.monotonic()
        answered = await asyncio.get_running_loop().run_in_executor(None, runtime.broker_answers,
                                                                    min(probe_s, 5.0))
        runtime.note_probe(answered, started)

    @app.timer(interval=max(0.2, checkpoints.every_seconds / 2), name="checkpoint-quiet-partitions")
    async def checkpoint_quiet_partitions():
        await checkpoints.checkpoint_quiet()

    @app.timer(interval=2.0)
    async def export_consumer_lag():
        """Consumer-group lag per assigned partition: high watermark minus the committed offset."""
        consumer = app.consumer
        committed = getattr(consumer, "_committed_offset", {})
        for tp in consumer.assignment():
            try:
                high = consumer.highwater(tp)
            except Exception:  # not fetched yet
                continue
            if high is None:
                continue
            done = committed.get(tp)
            lag = high - (done + 1 if done is not None else 0)
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(lag, 0))

    stop_timeout = runtime.settings.worker.stop_timeout_s

    @app.on_partitions_revoked.connect
    async def checkpoint_then_forget_revoked(sender, revoked, **kwargs):
        """The next owner starts where this worker stopped: what was applied is checkpointed first."""
        inputs = {runtime.topic_names[name] for name in checkpoints.inputs}
        partitions = {tp.partition for tp in revoked if tp.topic in inputs}
        if partitions:
            await checkpoints.settle(partitions, timeout=stop_timeout)
        checkpoints.forget(partitions)

    partitions_seen: list[int] = []  # the input topics' partition count at the first assignment
    crashing: list[asyncio.Task] = []  # held: the loop keeps only a weak reference to a task

    @app.on_partitions_assigned.connect
    async def inputs_still_copartitioned(sender, assigned, **kwargs):
        """The check at start (cli.errors.require_copartitioned), again at each assignment: an input
        topic grown while the workers run reaches them as a rebalance. Grown alone, it splits groups
        between partitions (see agents.topics.copartitioned): the worker stops rather than run split.
        Grown together, the groups whose keys hash anew start new models on their new partitions: said
        once, as an error."""
        try:
            counts = await asyncio.get_running_loop().run_in_executor(None, input_partition_counts,
                                                                      runtime.settings, 10.0)
        except Exception as exc:  # the broker away: the next assignment asks again
            log.warning("input topics' partition counts not read at this assignment (%s)", exc)
            return
        if not counts:
            return
        try:
            count = copartitioned(counts)
        except NotCoPartitioned as exc:
            log.critical("stopping: %s", exc)
            checkpoints.withhold(tp.partition for tp in assigned)
            crashing.append(crash(exc))
            return
        if partitions_seen and partitions_seen[-1] != count:
            log.error("the input topics now have %d partitions, %d before: groups whose keys hash to another "
                      "partition now start new models there (their models so far stay in the old partitions' "
                      "checkpoints, unused)", count, partitions_seen[-1])
        partitions_seen[:] = [count]

    def crash(exc: BaseException) -> asyncio.Task:
        """Stop the worker for ``exc`` once the rebalance under way is over.
        Faust's stop commits offsets through the consumer's thread, and while a rebalance held that
        thread the commit never returned (seen in every task's stack): the test's worker hung in 1 stop
        of 8 crashed inside the assignment callback and in 7 of 16 crashed right after it, in none of
        20 a second later and once Faust's rebalance was over. The stop itself is bounded as every
        stop is (agents.worker.stop_deadline)."""

        async def after_rebalance() -> None:
            await asyncio.sleep(1.0)
            while app.rebalancing and time.monotonic() < started + 30.0:
                await asyncio.sleep(0.1)
            await app.crash(exc)

        started = time.monotonic()
        return asyncio.get_running_loop().create_task(after_rebalance())

    @app.on_before_shutdown.connect
    async def checkpoint_on_stop(sender, **kwargs):
        """A graceful stop (SIGTERM, SIGINT): Faust has stopped the flow of events; checkpoint every owned
        partition, so that a restart re-emits nothing."""
        started = time.monotonic()
        settled = await checkpoints.settle(timeout=stop_timeout)
        log.log(logging.INFO if settled else logging.WARNING, "stop: partitions %s %s in %.2f s",
                sorted(checkpoints.states), "checkpointed" if settled else "NOT all checkpointed",
                time.monotonic() - started)
