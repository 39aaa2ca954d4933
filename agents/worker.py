"""A worker process: build the runtime from the settings, register the agents, run Faust."""

from __future__ import annotations

import zlib

from agents import external, pipeline, web
from agents.app import Runtime
from agents.checkpoints import PartitionCheckpoints
from agents.settings import Settings
from agents.topics import INPUT_STAGES, copartitioned, create_topics, input_partition_counts
from streams.features import FEATURE_SET
from streams.learning import SymbolLearner
from streams.pipeline import PartitionPipeline


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


def run(settings: Settings, loglevel: str | None = None) -> None:
    import faust

    runtime, _ = build(settings)
    # Build one throwaway learner first: importing torch and River takes seconds, which must not
    # stall the event loop (and the HTTP endpoints) at the first event of a new symbol.
    SymbolLearner("WARMUP", runtime.pipeline.learner)
    create_topics(settings)
    copartitioned(input_partition_counts(settings, every=True))  # NotCoPartitioned: refused before Faust starts
    (settings.state_path / "faust").mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(runtime.app, loglevel=loglevel or settings.log_level)
    worker.execute_from_commandline()
