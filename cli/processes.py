"""Child processes the command line starts (workers for the demo and the benchmarks)."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM (a Faust worker shuts down gracefully), then SIGKILL if it is not gone in ``timeout`` s."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
