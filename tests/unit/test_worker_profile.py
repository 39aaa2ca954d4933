"""bench/worker_profile.py's reading of py-spy's samples (the profile itself needs a broker and ptrace:
the benchmark, not the suite, runs it) and the benchmark-only tool environments of bench/common.py."""

from __future__ import annotations

import doctest
from collections import Counter
from pathlib import Path

from tests.bench_modules import bench_module


def test_its_examples_hold():
    profile = bench_module("worker_profile")
    failed, attempted = doctest.testmod(profile)
    assert attempted >= 3 and failed == 0


def test_stages_nest_and_the_loop_outside_the_agents_is_counted_apart():
    """A sample counts for every stage on its stack (the MLP's training inside the learner inside the
    pipeline); one taken while no agent ran is the loop's own; other threads are left out."""
    profile = bench_module("worker_profile")
    raw = "\n".join([
        "thread (7): MainThread;run (cli/main.py:3);Agent._execute_actor (faust/agents/agent.py:698);"
        "PartitionPipeline.on_tick (streams/pipeline.py:173);SymbolLearner.process (streams/learning.py:220);"
        "TorchMLP._train (streams/mlp.py:190) 6",
        "thread (7): MainThread;run (cli/main.py:3);Agent._execute_actor (faust/agents/agent.py:698);"
        "PartitionPipeline.on_tick (streams/pipeline.py:173);DriftMonitor._run (streams/drift/monitor.py:141) 2",
        "thread (7): MainThread;run (cli/main.py:3);Agent._execute_actor (faust/agents/agent.py:698);"
        "Runtime.publish (agents/app.py:384);AvroCodec.encode (schemas/codec.py:153) 1",
        "thread (7): MainThread;run (cli/main.py:3);EpollSelector.select (selectors.py:468) 1",
        "thread (9): Thread-1;f (x.py:1) 50",
    ])
    samples = profile.read_samples(raw)
    total, shares = profile.stage_shares(samples)
    assert total == 10
    assert (shares["pipeline"], shares["learner"], shares["mlp_training"], shares["drift"]) == (0.8, 0.6, 0.6, 0.2)
    assert (shares["publish"], shares["encode"], shares["agents"], shares["outside the agent"]) == (0.1, 0.1, 0.9, 0.1)
    assert profile.top_own(samples, 2) == [("TorchMLP._train (streams/mlp.py)", 0.6),
                                           ("DriftMonitor._run (streams/drift/monitor.py)", 0.2)]
    assert sum(Counter(profile.read_samples(raw)).values()) == 60


def test_a_tool_environment_is_made_once(tmp_path, monkeypatch):
    """A tool already in its environment is used as it is: no pip run (none is possible here: the
    command would fail and the test with it)."""
    common = bench_module("common")
    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    tool = tmp_path / ".cache" / "livelearn" / "bench-probe-1.0" / "bin" / "probe"
    tool.parent.mkdir(parents=True)
    tool.write_text("")
    monkeypatch.setattr(common.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("pip ran")))
    assert common.tool_env("probe-1.0", "probe==1.0", "probe") == str(tool)
