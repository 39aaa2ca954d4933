"""Entry point of a worker process: create topics, import every stage agent, run Faust."""

from __future__ import annotations

import faust

from agents import featurize, learn, predict  # noqa: F401  (each registers its agent)
from agents.app import app, metrics, settings, state
from agents.topics import create_topics


@app.task
async def _load_state_then_ready():
    """Ready only once the checkpoints (feature state, models) have been read."""
    await featurize.checkpoints.load()
    await predict.checkpoints.load()
    state["ready"] = True
    metrics.ready.set(1)


def run(loglevel: str | None = None) -> None:
    # Build one throwaway learner first: importing torch and River takes seconds, which must not
    # stall the event loop (and the HTTP endpoints) at the first event of a new symbol.
    predict.registry.new_learner("WARMUP")
    create_topics(settings)
    (settings.state_path / "faust").mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(app, loglevel=loglevel or settings.log_level)
    worker.execute_from_commandline()
