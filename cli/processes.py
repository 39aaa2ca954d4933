"""Child processes the command line starts: workers (the demo, the benchmarks), and pieces of work run
several at a time (`livelearn evaluate FILE... --jobs N`, the benchmarks' ``--jobs``), and how many of
them a machine and a job are worth."""

from __future__ import annotations

import os
import subprocess

# Each process holds torch, River and a pipeline (a few hundred MB), and a broker on the same machine
# needs CPU too: one process a CPU, at most this many, unless told otherwise (Processes, auto_jobs).
MAX_PROCESSES = 4

# ``backtest --jobs auto``: another process takes about 2 s to start (torch's import among it), and the
# fastest backtest measured runs about 9,000 records a second in one process (the shipped captures, mostly
# book tickers that publish nothing; one-minute klines, a prediction each, about 1,200): under 50,000
# records, about 5 s of one process's work at that rate, the start costs about what it saves (the shipped
# kline days, 4,320 ticks: 0.91x with two processes; the shipped captures: 1.27x; two real months of
# klines, 83,520 ticks: 1.83x; bench/backtest_jobs.py, README).
AUTO_MIN_RECORDS = 50_000

# ``evaluate FILE... --jobs auto``: the files' records are not counted before they are read, so their
# size on disk stands for the work. Measured here (2-core machine, 2026-12-07, the tables the same
# either way): the four shipped kline days (268 KB, 5,760 ticks) 6.25 s in one process and 5.89 s in
# two; the three shipped captures (2.8 MB) 9.64 s and 7.35 s; four real months of one-minute klines
# (not shipped) 117.6 s and 60.0 s. Under a megabyte in all (about 15 days of one-minute klines, a
# few seconds of work) one process.
AUTO_MIN_BYTES = 1_000_000


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, where the platform has one: a container's or a
    ``taskset``'s limit, not the machine's count), at least 1."""
    if hasattr(os, "sched_getaffinity"):  # not on macOS or Windows
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def jobs_option(value: str) -> int | None:
    """A ``--jobs`` value: a count of processes, or None for ``auto``; anything else a CliError (exit 2).

    >>> jobs_option("3"), jobs_option("auto")
    (3, None)
    >>> jobs_option("0")
    Traceback (most recent call last):
    ...
    cli.errors.CliError: --jobs 0: the number of processes must be at least 1, or auto
    """
    from cli.errors import CliError

    try:
        jobs = None if value == "auto" else int(value)
    except ValueError:
        jobs = 0
    if jobs is not None and jobs < 1:
        raise CliError(f"--jobs {value}: the number of processes must be at least 1, or auto", code=2)
    return jobs


def auto_jobs(sizes: dict[int, int], cpus: int) -> int:
    """Processes for a backtest of input partitions with these record counts on ``cpus`` usable CPUs:
    one under :data:`AUTO_MIN_RECORDS` records in all, else one a CPU, at most :data:`MAX_PROCESSES`
    and no more than the partitions that hold records.

    >>> auto_jobs({0: 40_000, 1: 9_000}, 2)
    1
    >>> auto_jobs({0: 60_000, 1: 30_000, 2: 0}, 16)
    2
    >>> auto_jobs({p: 100_000 for p in range(12)}, 16)
    4
    >>> auto_jobs({0: 60_000, 1: 30_000}, 1)
    1
    """
    if sum(sizes.values()) < AUTO_MIN_RECORDS:
        return 1
    return max(1, min(cpus, MAX_PROCESSES, sum(1 for size in sizes.values() if size > 0)))


def auto_file_jobs(sizes: list[int], cpus: int) -> int:
    """Processes for evaluating files of these sizes (bytes) each in a process of its own, on ``cpus``
    usable CPUs: one under :data:`AUTO_MIN_BYTES` in all, else one a CPU, at most
    :data:`MAX_PROCESSES` and no more than the files.

    >>> auto_file_jobs([70_000] * 4, 2), auto_file_jobs([1_300_000, 1_100_000, 400_000], 2)
    (1, 2)
    >>> auto_file_jobs([2_000_000] * 9, 16), auto_file_jobs([5_000_000], 16), auto_file_jobs([], 2)
    (4, 1, 1)
    """
    if sum(sizes) < AUTO_MIN_BYTES:
        return 1
    return max(1, min(cpus, MAX_PROCESSES, len(sizes)))


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM (a Faust worker shuts down gracefully), then SIGKILL if it is not gone in ``timeout`` s."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class Processes:
    """Independent pieces of work run ``jobs`` at a time, each in its own process, the results given
    back in the order of the work (so the printed tables and RESULT lines are the same
    whatever ``jobs`` is; each piece builds its own pipeline, so its figures are too). With ``jobs`` 1
    everything runs here, one piece after another. Processes are spawned, not forked: torch's thread
    pools do not survive a fork. ``fn`` and the items must pickle (a module-level function).

    >>> with Processes(1) as processes:
    ...     list(processes.map(abs, [-2, 3]))
    [2, 3]
    """

    def __init__(self, jobs: int | None = None):
        jobs = jobs if jobs is not None else min(usable_cpus(), MAX_PROCESSES)
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.jobs = jobs
        self._pool = None

    def __enter__(self) -> Processes:
        if self.jobs > 1:
            import concurrent.futures
            import multiprocessing

            self._pool = concurrent.futures.ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def map(self, fn, items):
        """``fn(item)`` for every item, in order; with processes all are started at once and each result
        is given as soon as it and those before it are done (a long run prints as it goes)."""
        if self._pool is None:
            return map(fn, items)
        futures = [self._pool.submit(fn, item) for item in items]
        return (future.result() for future in futures)
