"""What the worker's input fetch hold costs an idle worker (``LIVELEARN_INPUT_FETCH_WAIT_MS``,
agents/kafka_input.py): for each hold, a worker with nothing to read for ``--seconds``, and the CPU
time it and the local broker spend meanwhile, as a share of one core (from /proc). A short hold is what
lets a worker that fell behind catch up (tests/integration/test_worker_latency_kafka.py,
bench/pipeline.py (c)); an idle worker pays for it with a fetch per hold.

Measured on this 2-core machine (2026-12-08, 20 s idle each; the first four rounds by a scratch
version of this script, the last by this one), worker / broker CPU: 10 ms 6.1%, 6.0%, 5.9% / 6.1%,
6.5%, 6.5%; 50 ms 2.7% / 3.6%; 100 ms 1.8% / 2.9%; 1,500 ms (Faust's) 0.8%, 0.7%, 0.8% / 1.9%, 1.6%,
2.0%. The default stays 10 ms: at 100 and 250 ms a worker
behind after bench/pipeline.py's backlog, offered about 400 ticks/s, stayed about 175 and 310 ms
behind (p50 over 10 s, one run each), against 7-12 ms at 10 ms; the seeds promise predictions within 15 ms.

Usage: python bench/input_fetch_wait.py [--waits 10 50 100 1500] [--seconds 20]
(needs the local broker, started by ``livelearn kafka up``: its process is read from its pid file)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

from common import isolated_settings, result, running_worker

from agents.settings import Settings
from agents.topics import create_topics


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=float, nargs="+", default=[10, 50, 100, 1500], help="holds to try, ms")
    parser.add_argument("--seconds", type=float, default=20.0, help="idle time measured per hold")
    args = parser.parse_args()
    base = Settings.from_env()
    pid_file = base.local_broker.home / f"broker-{base.local_broker.kafka_port}" / "broker.pid"
    if not pid_file.exists():
        parser.error(f"no local broker's pid file at {pid_file}: start it with `livelearn kafka up`")
    broker = int(pid_file.read_text())
    for wait in args.waits:
        settings = isolated_settings(dataclasses.replace(base, input_fetch_wait=f"{wait:g}"), "idle")
        create_topics(settings)
        with running_worker(settings) as worker:
            time.sleep(5)  # past the group join and the first reads
            start = (cpu_seconds(worker.pid), cpu_seconds(broker), time.monotonic())
            time.sleep(args.seconds)
            end = (cpu_seconds(worker.pid), cpu_seconds(broker), time.monotonic())
        elapsed = end[2] - start[2]
        worker_share, broker_share = (end[0] - start[0]) / elapsed, (end[1] - start[1]) / elapsed
        print(f"hold {wait:6g} ms: idle {elapsed:.0f} s, worker CPU {worker_share:.1%}, broker CPU {broker_share:.1%}")
        result("input_fetch_wait", wait_ms=wait, idle_s=round(elapsed, 1), worker_cpu=round(worker_share, 4),
               broker_cpu=round(broker_share, 4))


if __name__ == "__main__":
    main()
