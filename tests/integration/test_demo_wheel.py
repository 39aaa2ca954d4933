"""`livelearn demo` from an installed wheel: the sample ships with it, and the report lands in the
current folder, not in site-packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import uuid

import pytest

from tests.conftest import ROOT, free_port

# Heavy: about a minute (a wheel built and installed into a fresh environment), run beside the chaos runs.
pytestmark = [pytest.mark.integration, pytest.mark.heavy]


def test_demo_runs_from_an_installed_wheel(kafka, tmp_path):
    # Without this checkout on the path: pip would take its livelearn.egg-info for an installed copy.
    clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # Built from a copy: a build writes build/ and *.egg-info next to the sources.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__",
                                                                 "reports", ".venv"))
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(wheels), str(source)], capture_output=True, text=True, timeout=300, env=clean)
    assert build.returncode == 0, build.stderr
    [wheel] = wheels.glob("livelearn-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                              "--no-deps", "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=300,
                             env=clean, cwd=tmp_path)
    assert install.returncode == 0, install.stderr
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (venv / "share" / "livelearn" / "sample" / "BTCUSDT-1m-2020-01-01.zip").is_file()

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run = uuid.uuid4().hex[:8]
    # Dependencies from the project environment; livelearn itself only from the wheel.
    env = dict(clean)
    env.update({"PYTHONPATH": sysconfig.get_paths()["purelib"], "KAFKA_BOOTSTRAP_SERVERS": kafka,
                "LIVELEARN_TOPIC_PREFIX": f"wheel{run}.", "LIVELEARN_APP_ID": f"wheel-{run}",
                "LIVELEARN_WEB_PORT": str(free_port()), "LIVELEARN_STATE_DIR": str(tmp_path / "state")})
    result = subprocess.run([str(venv / "bin" / "livelearn"), "demo"], cwd=run_dir, env=env, capture_output=True,
                            text=True, timeout=600)
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        # The run's drift alerts against their bound, per symbol, over its 1,440 vectors.
        assert "BTCUSDT: drift alerts over 1,440 vectors, per 10k" in result.stdout, result.stdout[-3000:]
        reports = list((run_dir / "reports").glob("report-*.html"))
        assert len(reports) == 1 and "livelearn run report" in reports[0].read_text()
        assert str(site) in subprocess.run([str(venv / "bin" / "python"), "-c", "import cli; print(cli.__file__)"],
                                           env=env, cwd=run_dir, capture_output=True, text=True).stdout
        assert not (site / "reports").exists() and not (ROOT / "reports" / reports[0].name).exists()
    finally:
        from cli.kafka_local import delete_topics_containing

        delete_topics_containing(kafka, f"wheel{run}")
