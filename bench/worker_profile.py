"""Where a worker's time goes: py-spy samples a `livelearn worker` draining a backlog through the real
broker, and the samples of its event loop are summed by stage (issue #18: profile before and after a
change, on the process users run rather than on the core in isolation, which bench/core.py times).

py-spy is a benchmark-only tool: it runs from its own virtual environment
(``~/.cache/livelearn/bench-py-spy-<version>``, made with pip on first use), so the project's lock stays
as it is. It reads the worker's memory from outside (ptrace: root, or ``CAP_SYS_PTRACE`` in a
container) and pauses it at each sample, so the worker drains more slowly while it is sampled; the
shares, not the rate, are the measure.

A sample counts for every stage whose function is on its stack (the stages nest: ``learner`` holds
``mlp_training``, ``publish`` holds ``encode``), as a share of the event loop's samples (the main
thread: librdkafka's own threads are native and not sampled). ``outside the agent`` is the loop's
time in neither agent: Faust's consumer, its stream machinery, the web endpoints, the periodic
checkpoints and the loop itself. Then the functions with the most samples of their own.

Inputs: synthetic ticks (a prediction each, the costliest tick; ``connectors.synth``) by default, or
``--capture``: the shipped BTCUSDT capture's ticks (80% book tickers, which publish nothing).

Usage: python bench/worker_profile.py [--ticks 12000] [--capture] [--rate 100] [--top 15] [--raw FILE]
(needs the local broker: livelearn kafka up)
"""

from __future__ import annotations

import argparse
import atexit
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import isolated_settings, result, running_worker, tool_env
from pipeline import CAPTURE, count_until, produce_backlog, stamped_by_broker

from agents.settings import Settings
from agents.topics import create_topics
from connectors.recorded import read_file
from connectors.synth import generate
from schemas.codec import AvroCodec

PY_SPY_VERSION = "0.4.3"
# (stage, function name as py-spy prints it; a trailing dot: any method of the class)
STAGES = (
    ("agents", "Agent._execute_actor"),
    ("pipeline", "PartitionPipeline.on_tick"),
    ("decode", "AvroCodec.decode"),
    ("features", "FeatureEngine.update"),
    ("learner", "SymbolLearner.process"),
    ("mlp_training", "TorchMLP._train"),
    ("drift", "DriftMonitor."),
    ("publish", "Runtime.publish"),
    ("encode", "AvroCodec.encode"),
    ("checkpoints", "PartitionCheckpoints."),
)
OUTSIDE = "outside the agent"
FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def read_samples(raw: str) -> Counter[tuple[str, ...]]:
    """py-spy's raw (collapsed) output as sample counts per stack, root first; frames as
    ``function (file)`` without line numbers, so that the lines of one function add up.

    >>> read_samples("thread (1): MainThread;main (cli/main.py:9);f (a.py:3) 4\\n"
    ...              "thread (1): MainThread;main (cli/main.py:9);f (a.py:5) 1\\n")
    Counter({('thread (1): MainThread', 'main (cli/main.py)', 'f (a.py)'): 5})
    """
    samples: Counter[tuple[str, ...]] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for frame in stack.split(";"):
            match = FRAME.match(frame)
            frames.append(f"{match['function']} ({match['file']})" if match else frame)
        samples[tuple(frames)] += int(count)
    return samples


def _function(frame: str) -> str:
    return frame.split(" (", 1)[0]


def stage_shares(samples: Counter[tuple[str, ...]], thread: str = "MainThread") -> tuple[int, dict[str, float]]:
    """The ``thread``'s samples, and per stage (:data:`STAGES`) the share of them with the stage's
    function on the stack; ``outside the agent``: with neither agent's actor on it.

    >>> s = Counter({("thread (1): MainThread", "Agent._execute_actor (a.py)", "SymbolLearner.process (l.py)"): 3,
    ...              ("thread (1): MainThread", "Agent._execute_actor (a.py)", "DriftMonitor._run (m.py)"): 1,
    ...              ("thread (1): MainThread", "BaseEventLoop._run_once (b.py)"): 1,
    ...              ("thread (2): Thread-1", "f (t.py)"): 9})
    >>> total, shares = stage_shares(s)
    >>> total, shares["learner"], shares["drift"], shares["outside the agent"], shares["publish"]
    (5, 0.6, 0.2, 0.2, 0.0)
    """
    total = 0
    counts: Counter[str] = Counter()
    for stack, count in samples.items():
        if not stack or thread not in stack[0]:
            continue
        total += count
        functions = {_function(frame) for frame in stack[1:]}
        for stage, name in STAGES:
            on_stack = any(f.startswith(name) for f in functions) if name.endswith(".") else name in functions
            if on_stack:
                counts[stage] += count
        if "Agent._execute_actor" not in functions:
            counts[OUTSIDE] += count
    names = [stage for stage, _ in STAGES] + [OUTSIDE]
    return total, {stage: counts[stage] / total if total else 0.0 for stage in names}


def top_own(samples: Counter[tuple[str, ...]], n: int, thread: str = "MainThread") -> list[tuple[str, float]]:
    """The ``n`` functions with the most samples of their own (at the top of the stack), as shares of
    the thread's samples.

    >>> top_own(Counter({("thread (1): MainThread", "g (b.py)", "f (a.py)"): 3, ("thread (1): MainThread", "g (b.py)"): 1}), 1)
    [('f (a.py)', 0.75)]
    """
    own: Counter[str] = Counter()
    total = 0
    for stack, count in samples.items():
        if stack and thread in stack[0] and len(stack) > 1:
            own[stack[-1]] += count
            total += count
    return [(frame, count / total) for frame, count in own.most_common(n)]


def ticks_of(args: argparse.Namespace) -> tuple[list[dict], int]:
    """The input ticks and how many predictions they make."""
    if args.capture:
        ticks = [item.tick for item in read_file(CAPTURE) if item.tick is not None][: args.ticks]
        return ticks, sum(t["kind"] != "BOOK_TICKER" for t in ticks)
    ticks = list(generate(args.ticks, seed=7))
    return ticks, len(ticks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=12_000, help="backlog the worker drains while sampled")
    parser.add_argument("--capture", action="store_true", help="the shipped BTCUSDT capture's ticks, not synthetic")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=15, help="functions listed by their own samples")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw samples here (flamegraph.pl reads them)")
    args = parser.parse_args()
    py_spy = tool_env(f"py-spy-{PY_SPY_VERSION}", f"py-spy=={PY_SPY_VERSION}", "py-spy")
    if py_spy is None:
        raise SystemExit("bench: py-spy could not be installed; nothing to measure")
    base = Settings.from_env()
    ticks, expected = ticks_of(args)
    codec = AvroCodec.for_topic_schema("tick")
    records = [(t["symbol"].encode(), codec.encode(t), t["event_time_ms"]) for t in ticks]
    settings = isolated_settings(base, "profile")
    create_topics(settings)
    stamped_by_broker(base.bootstrap_servers, settings.topic("predictions"))
    folder = tempfile.mkdtemp(prefix="livelearn-profile-")
    atexit.register(shutil.rmtree, folder, True)
    raw = args.raw or Path(folder) / "worker.txt"
    with running_worker(settings) as worker:
        spy = subprocess.Popen([py_spy, "record", "--pid", str(worker.pid), "--rate", str(args.rate), "--format", "raw",
                                "--threads", "--output", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)
        if spy.poll() is not None:
            error = spy.stderr.read().decode() if spy.stderr else ""
            raise SystemExit(f"bench: py-spy could not sample the worker: {error[-500:]}")
        produce_backlog(base.bootstrap_servers, settings.topic("ticks"), records)
        first, last = count_until(base.bootstrap_servers, settings.topic("predictions"), expected, 900)
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    samples = read_samples(raw.read_text())
    total, shares = stage_shares(samples)
    own = top_own(samples, args.top)
    source = f"the capture's first {len(ticks):,} ticks" if args.capture else f"{len(ticks):,} synthetic ticks"
    rate = (expected - 1) / (last - first) * len(ticks) / expected  # from the first prediction to the last
    print(f"worker draining {source} while sampled: {rate:,.0f} ticks/s "
          f"({expected:,} predictions), {total:,} samples of its event loop at {args.rate}/s")
    for stage, share in shares.items():
        print(f"  {stage:<20}{share:7.1%}")
    print("functions by their own samples:")
    for frame, share in own:
        print(f"  {share:6.1%}  {frame}")
    result("worker_profile", input="capture" if args.capture else "synthetic", ticks=len(ticks), samples=total,
           ticks_per_s_sampled=round(rate),
           shares={stage: round(share, 4) for stage, share in shares.items()},
           own={frame: round(share, 4) for frame, share in own})


if __name__ == "__main__":
    main()
