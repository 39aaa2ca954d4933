"""A worker process: build the runtime from the settings, register the agents, run Faust."""

from __future__ import annotations

import logging
import os
import threading
import zlib
from collections.abc import Callable

from agents import external, pipeline, web
from agents.app import Runtime
from agents.checkpoints import PartitionCheckpoints
from agents.settings import Settings
from agents.topics import INPUT_STAGES
from streams.features import FEATURE_SET
from streams.learning import SymbolLearner
from streams.pipeline import PartitionPipeline

log = logging.getLogger("livelearn.worker")
# Faust's own stop after the checkpoints (consumer, web server, producer): a few seconds with a broker
# that answers.
FAUST_STOP_S = 20.0


def checkpoint_version(settings: Settings) -> str:
    """A checkpoint is restored only into the same state format and model configuration."""
    config = zlib.crc32(f"{settings.members}|{settings.challengers}|{settings.guard_updates}|{settings.label}|"
                        f"{settings.predict_on}|{settings.basis_groups}".encode())
    return f"pipeline-v9-{FEATURE_SET}-{config:08x}"


def build(settings: Settings) -> tuple[Runtime, PartitionCheckpoints]:
    """The Faust app with every agent, endpoint and timer registered (not started)."""
    runtime = Runtime(settings)
    checkpoints = PartitionCheckpoints(runtime, "pipeline", INPUT_STAGES, checkpoint_version(settings),
                                       lambda: PartitionPipeline(runtime.pipeline),
                                       every_events=settings.worker.checkpoint_events,
                                       every_seconds=settings.worker.checkpoint_seconds,
                                       part_bytes=settings.worker.checkpoint_part_bytes,
                                       configured=runtime.pipeline)
    pipeline.register(runtime, checkpoints)
    external.register(runtime, checkpoints)
    web.register(runtime, checkpoints)
    return runtime, checkpoints


def stop_deadline(seconds: float) -> Callable[[], None]:
    """An ``arm()`` that, at its first call, starts a daemon timer ending the process (exit 1) if it is
    still running ``seconds`` later: a stop then ends as a kill -9 would, which loses nothing (the next
    owner resumes from the last checkpoint, tests/integration/test_restart.py).

    Why: Faust's stop can take far longer than the checkpoints' LIVELEARN_STOP_TIMEOUT_S. With the broker
    away, its consumer thread waits out its own 60-s shutdown timeout (a SIGTERM then took 66 s to exit,
    stop timeout 5 s); during a rebalance its offset commit never returned (agents.web). A supervisor
    (systemd, Kubernetes' 30-s grace period) waiting on such a stop holds the partitions meanwhile."""
    armed: list[threading.Timer] = []

    def overdue() -> None:
        log.critical("stop not over after %.0f s: exiting now, as a kill would (the next owner resumes from "
                     "the last checkpoint)", seconds)
        logging.shutdown()
        os._exit(1)

    def arm() -> None:
        if not armed:
            armed.append(threading.Timer(seconds, overdue))
            armed[0].daemon = True
            armed[0].start()
    return arm


def run(settings: Settings, loglevel: str | None = None) -> None:
    """Run the worker until it stops; its topics exist and are co-partitioned (cli.main checks)."""
    import faust

    runtime, _ = build(settings)
    # Build one throwaway learner first: importing torch and River takes seconds, which must not
    # stall the event loop (and the HTTP endpoints) at the first event of a new symbol.
    SymbolLearner("WARMUP", runtime.pipeline.learner)
    (settings.state_path / "faust").mkdir(parents=True, exist_ok=True)
    arm = stop_deadline(settings.worker.stop_timeout_s + FAUST_STOP_S)

    class Worker(faust.Worker):
        """Faust's worker, its stop bounded: armed when its stop begins (mode's public ``on_stop`` hook,
        which a signal's stop and every other reaches before anything that can wait on the broker) and
        when the app ends otherwise (a crash: ``on_worker_shutdown`` runs before the stop)."""

        async def on_stop(self) -> None:
            arm()
            await super().on_stop()

        def on_worker_shutdown(self) -> None:
            arm()
            super().on_worker_shutdown()

    worker = Worker(runtime.app, loglevel=loglevel or settings.log_level)
    worker.execute_from_commandline()
