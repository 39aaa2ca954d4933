"""Command-line edges that need no broker: version, secrets, typed options, safe file names."""

from __future__ import annotations

import pytest

from cli import __version__
from tests.conftest import ROOT, livelearn


def test_version():
    result = livelearn("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"livelearn {__version__}"


def test_config_masks_every_secret():
    secrets = {"KAFKA_SASL_PASSWORD": "sasl-s3cret", "KAFKA_SSL_KEY_PASSWORD": "key-s3cret",
               "LIVELEARN_CHECKPOINT_KEY": "hmac-s3cret-0123456789"}
    for args in (("config",), ("config", "--markdown")):
        result = livelearn(*args, env=secrets)
        assert result.returncode == 0
        assert "s3cret" not in result.stdout + result.stderr
    shown = livelearn("config", env=secrets).stdout
    assert "KAFKA_SASL_PASSWORD=****" in shown and "LIVELEARN_CHECKPOINT_KEY=****" in shown
    assert "KAFKA_SASL_USERNAME=" in shown  # not a secret, shown as set (empty here)


def test_options_with_bad_values_are_one_clear_line():
    result = livelearn("replay", "x.zip", "--speed", "fast")
    assert result.returncode == 2
    assert "argument --speed: 'fast' is not a number or 'max'" in result.stderr
    assert "Traceback" not in result.stderr
    result = livelearn("replay", "x.zip", "--speed", "-3")
    assert result.returncode == 2 and "must be a positive number" in result.stderr
    result = livelearn("replay", "x.zip", "--max-reject-ratio", "2")
    assert result.returncode == 2 and "is not between 0 and 1" in result.stderr
    for command in (("replay", "x.zip"), ("evaluate", "x.zip"), ("predictions",), ("alerts",), ("models",)):
        result = livelearn(*command, "--symbols", ",,,")  # once kept no symbol, every row "filtered out"
        assert result.returncode == 2 and "argument --symbols: ',,,' names no symbol" in result.stderr, command


def test_history_refuses_names_that_are_not_binance_symbols(tmp_path):
    for symbol, interval in (("../../outside", "1m"), ("BTCUSDT", "1m/../../x")):
        result = livelearn("history", symbol, "--interval", interval, "--start", "2024-01-01", "--end", "2024-01-02",
                           "--out", str(tmp_path / "out"), env={"LIVELEARN_BINANCE_REST_URL": "http://127.0.0.1:9"})
        assert result.returncode == 2, result.stderr
        assert "is not a Binance symbol" in result.stderr or "is not a kline interval" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "outside").exists()


def test_bad_security_settings_fail_with_the_variable_name(tmp_path):
    result = livelearn("topics", "list", env={"KAFKA_SECURITY_PROTOCOL": "TLS"})
    assert result.returncode == 2 and "KAFKA_SECURITY_PROTOCOL must be one of" in result.stderr
    result = livelearn("topics", "list", env={"KAFKA_SECURITY_PROTOCOL": "SSL",
                                             "KAFKA_SSL_CA_LOCATION": str(tmp_path / "missing.pem")})
    assert result.returncode == 2 and "KAFKA_SSL_CA_LOCATION: no such file" in result.stderr


def test_readme_configuration_table_is_the_settings_table():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert livelearn("config", "--markdown").stdout.strip() in readme


def test_bad_settings_fail_at_start_naming_every_variable():
    result = livelearn("config", env={"LIVELEARN_DRIFT_WINDOW": "abc", "LIVELEARN_LABEL": "foo",
                                      "LIVELEARN_PARTITIONS": "0", "LIVELEARN_BASIS_GROUPS": "x=BTCUSDT",
                                      "LIVELEARN_MEMBERS": "logreg,mlpp", "LIVELEARN_CHALLENGERS": "x=logreg@fast"})
    assert result.returncode == 2 and result.stdout == ""
    for expected in ("LIVELEARN_DRIFT_WINDOW must be an integer, got 'abc'",
                     "LIVELEARN_LABEL must be one of horizon, next_change, got 'foo'",
                     "LIVELEARN_PARTITIONS must be >= 1, got '0'", "LIVELEARN_BASIS_GROUPS: 'x=BTCUSDT'",
                     "unknown member 'mlpp'", "bad learning rate in member 'logreg@fast'"):
        assert expected in result.stderr


def test_an_exactly_once_checkpoint_interval_the_broker_would_abort_is_refused_at_start():
    """The broker aborts a transaction open longer than its timeout and fences the producer: a worker so
    configured crashed at its first checkpoint (seen in the broker outage test)."""
    bad = {"LIVELEARN_PROCESSING_GUARANTEE": "exactly_once", "LIVELEARN_TRANSACTION_TIMEOUT_S": "10",
           "LIVELEARN_MODEL_CHECKPOINT_SECONDS": "40"}
    result = livelearn("config", env=bad)
    assert result.returncode == 2
    assert ("LIVELEARN_TRANSACTION_TIMEOUT_S (10) must be at least twice LIVELEARN_MODEL_CHECKPOINT_SECONDS (40) "
            "with exactly_once") in result.stderr
    assert livelearn("config", env={**bad, "LIVELEARN_TRANSACTION_TIMEOUT_S": "80"}).returncode == 0
    assert livelearn("config", env={**bad, "LIVELEARN_PROCESSING_GUARANTEE": "at_least_once"}).returncode == 0


def test_readers_drop_an_output_repeated_by_an_at_least_once_worker():
    from cli.topic_reader import Dedup

    dedup = Dedup("predictions")
    records = [{"prediction_id": "a"}, {"prediction_id": "b"}, {"prediction_id": "a"}]
    assert [r["prediction_id"] for r in records if dedup.fresh(r)] == ["a", "b"] and dedup.dropped == 1
    alerts = Dedup("alerts")
    firing, resolved = {"alert_id": "x", "status": "FIRING"}, {"alert_id": "x", "status": "RESOLVED"}
    assert [alerts.fresh(r) for r in (firing, resolved, firing)] == [True, True, False]
    assert Dedup("performance").fresh({}) and Dedup("performance").fresh({})


def test_a_port_reserved_by_one_process_is_not_handed_to_another(tmp_path, monkeypatch):
    """Two test lanes run side by side: a port free_port gave one process is skipped by the other
    while the first lives, and free again once it has ended."""
    import os
    import socket
    import subprocess
    import sys

    import pytest

    from cli import kafka_local
    from tests.conftest import ROOT

    def bindable(port: int) -> bool:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    start = next(p for p in range(29_000, 31_000, 3) if all(bindable(p + i) for i in range(3)))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from cli import kafka_local as k; "
         f"k.PORT_RANGE = ({start}, {start + 3}); print(sorted(k.free_port() for _ in range(3)), flush=True); "
         "sys.stdin.read()"],
        cwd=ROOT, env=dict(os.environ),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == str([start, start + 1, start + 2])
        monkeypatch.setattr(kafka_local, "PORT_RANGE", (start, start + 3))
        with pytest.raises(kafka_local.BrokerError, match="no free port"):
            kafka_local.free_port()
    finally:
        child.communicate("")
    assert start <= kafka_local.free_port() < start + 3


def test_evaluate_refuses_a_file_without_a_single_tick(tmp_path):
    """An empty table would read as a result: a file of unreadable rows is one clear error."""
    bad = tmp_path / "BTCUSDT-1m-2024-01-01.csv"
    bad.write_text("open_time,open,high\n1,2,3\n4,5,6\n")
    result = livelearn("evaluate", str(bad))
    assert result.returncode == 1
    assert "no ticks in it (2 rows read, 2 rejected; line 2: malformed_row" in result.stderr


def test_binance_dumps_that_hold_no_trade_or_quote_are_left_out_saying_what_they_hold(tmp_path):
    """data.binance.vision's USD-M tree holds metrics (open interest, long/short ratios), bookDepth (depth
    in bands of distance from the price) and fundingRate dumps beside the klines, each named
    SYMBOL-kind-date. Each was left out with "not market data?", which they are. Now the line says what
    each holds, told by its folder, its name, or (renamed) its header; the rows are the dumps' own shapes."""
    import shutil
    import zipfile

    day = tmp_path / "futures/um/daily/klines/BTCUSDT/1m"
    day.mkdir(parents=True)
    shutil.copy(ROOT / "data/binance/klines/spot/BTCUSDT-1m-2020-01-01.zip", day)
    dumps = {
        "futures/um/daily/metrics/BTCUSDT/BTCUSDT-metrics-2024-01-01": (
            "create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,"
            "sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio\n"
            "2024-01-01 00:05:00,BTCUSDT,100243.058,12494186585.40,0.69,1.82,0.56,1.15\n"),
        "futures/um/daily/bookDepth/BTCUSDT/BTCUSDT-bookDepth-2024-01-01": (
            "timestamp,percentage,depth,notional\n2024-01-01 00:00:08,-5,1234.5,52212345.1\n"
            "2024-01-01 00:00:08,5,1100.2,46712345.9\n"),
        "futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-01": (
            "calc_time,funding_interval_hours,last_funding_rate\n1704067200000,8,0.00010000\n"),
        "renamed/funding": "calc_time,funding_interval_hours,last_funding_rate\n1704067200000,8,0.00010000\n",
    }
    for name, text in dumps.items():
        path = tmp_path / f"{name}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(f"{path.stem}.csv", text)
    result = livelearn("evaluate", "--quiet", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name, holds in (("metrics", "open interest and long/short ratios (data.binance.vision's metrics)"),
                        ("bookDepth", "order-book depth in bands (data.binance.vision's bookDepth)"),
                        ("fundingRate", "funding rates (data.binance.vision's fundingRate)")):
        path = next(tmp_path.rglob(f"*-{name}-*.zip"))
        assert f"{path}: BTCUSDT's {holds}, no trade or quote: left out" in result.stderr
    assert (f"{tmp_path / 'renamed/funding.zip'}: a pair's funding rates (data.binance.vision's fundingRate), "
            "no trade or quote: left out") in result.stderr
    assert "not market data" not in result.stderr
    assert "BTCUSDT: 1435 outcomes" in result.stdout


@pytest.mark.heavy
def test_evaluate_leaves_out_the_files_of_a_folder_that_hold_no_tick(tmp_path):
    """A data folder holds logs, scripts and notes as well: the first of them stopped the evaluation of
    the whole folder on its first unreadable row. Now each is left out with a line on stderr and the
    data are evaluated; a folder of nothing but notes is one clear error."""
    import shutil

    shutil.copy(ROOT / "data/binance/klines/spot/BTCUSDT-1m-2020-01-01.zip", tmp_path)
    (tmp_path / "download.log").write_text("fetched BTCUSDT-1m-2020-01-01.zip\n")
    (tmp_path / "fetch.py").write_text("import urllib.request\n")
    result = livelearn("evaluate", "--quiet", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in ("download.log", "fetch.py"):
        assert f"{tmp_path / name}: no tick in its first 10,000 rows (not market data?): left out" in result.stderr
    assert f"{tmp_path / 'BTCUSDT-1m-2020-01-01.zip'} (label" in result.stdout and "BTCUSDT: 1435 outcomes" in result.stdout
    # Market data whose name gives no pair is not "not market data": the line says what mends it.
    (tmp_path / "klines (1).csv").write_text(
        "1577836800000,7195.24,7196.25,7183.14,7186.68,51.642812,1577836859999,371233.85,493,19.24,138291.35,0\n")
    result = livelearn("evaluate", "--quiet", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (f"{tmp_path / 'klines (1).csv'}: its name gives no pair, so its rows name none: left out "
            "(evaluate it on its own with --symbol)") in result.stderr
    (tmp_path / "klines (1).csv").unlink()
    (tmp_path / "BTCUSDT-1m-2020-01-01.zip").unlink()
    result = livelearn("evaluate", "--quiet", str(tmp_path))
    assert result.returncode == 1 and f"no file with ticks in {tmp_path}" in result.stderr


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    """kafka-storage's parser reads an id starting with "-" as an option: one fresh broker in 64 failed
    to format its storage. An id whose first byte would encode to "-" is drawn again."""
    import uuid

    from cli import kafka_local

    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(kafka_local.uuid, "uuid4", lambda: next(draws))
    assert kafka_local.new_cluster_id() == "AQEBAQEBAQEBAQEBAQEBAQ"
    monkeypatch.undo()
    ids = [kafka_local.new_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_a_folder_stands_for_the_data_files_under_it(tmp_path):
    """`livelearn history` writes a tree of dumps; a folder argument is its data files, in path order,
    without checksums, unfinished downloads, notes or hidden files."""
    import json
    import shutil

    days = [ROOT / "data/binance/klines/spot" / f"BTCUSDT-1m-2020-01-0{d}.zip" for d in (1, 2)]
    folder = tmp_path / "history/spot/daily/klines/BTCUSDT/1m"
    folder.mkdir(parents=True)
    for day in days:
        shutil.copy(day, folder / day.name)
    for name in (f"{days[0].name}.CHECKSUM", "BTCUSDT-1m-2020-01-03.csv.partial", "README.md", ".DS_Store"):
        (folder / name).write_text("not data\n")
    result = livelearn("evaluate", "--quiet", "--json", str(tmp_path / "history"))
    assert result.returncode == 0, result.stderr
    assert "rejected" not in result.stderr
    tables = json.loads(result.stdout)
    assert sorted(tables) == sorted(["all files", *(str(folder / day.name) for day in days)])
    # Several files: one more table, every file's outcomes pooled (the two days are two series).
    outcomes = [tables[str(folder / day.name)]["_counts"]["BTCUSDT"]["outcomes"] for day in days]
    assert tables["all files"]["_counts"]["all files"]["outcomes"] == sum(outcomes) > 2800
    rows = [tables[str(folder / day.name)]["BTCUSDT"]["ensemble"] for day in days]
    pooled = tables["all files"]["all files"]["ensemble"]
    assert pooled["n"] == sum(r["n"] for r in rows)
    assert abs(pooled["log_loss"] - sum(r["log_loss"] * r["n"] for r in rows) / pooled["n"]) < 1e-12

    empty = tmp_path / "empty"
    (empty / ".cache").mkdir(parents=True)
    (empty / ".cache" / "x.csv").write_text("1,2\n")
    for args in (("evaluate", str(empty)), ("replay", str(empty))):
        result = livelearn(*args, env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
        assert result.returncode == 2 and f"{empty}: a folder with no data file in it" in result.stderr


def test_paths_that_cannot_be_read_are_one_clear_line(tmp_path):
    """A dataset path is checked before the broker is asked for, and a file the system refuses to open
    (here a socket) is named with the system's reason, not a traceback."""
    import socket

    result = livelearn("replay-dataset", str(tmp_path), env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    assert result.returncode == 2
    assert f"no dataset {str(tmp_path)!r} (a folder, not a CSV file)" in result.stderr
    path = tmp_path / "BTCUSDT-1m-2024-01-01.csv"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        result = livelearn("evaluate", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"livelearn: {path}: ")


def test_a_delivery_contract_dump_is_read_under_its_symbol(tmp_path):
    """`history` writes BTCUSDT_250328-1m-....zip for a USD-M delivery contract; its rows were all
    rejected as an invalid symbol before."""
    import shutil

    day = tmp_path / "BTCUSDT_250328-1m-2020-01-01.zip"
    shutil.copy(ROOT / "data/binance/klines/spot/BTCUSDT-1m-2020-01-01.zip", day)
    result = livelearn("evaluate", "--quiet", str(day))
    assert result.returncode == 0, result.stderr
    assert "BTCUSDT_250328: 1435 outcomes" in result.stdout


@pytest.mark.heavy
def test_evaluate_joined_runs_the_files_as_one_stream_in_event_time(tmp_path):
    """`evaluate --joined`: a pair's consecutive days through one pipeline, as a worker that read them
    live learned them. The first day's last outcomes mature on the second day's ticks (per file they
    are lost), and the files are merged in event time, so the order they are given in changes nothing."""
    import json

    days = [str(ROOT / "data/binance/klines/spot" / f"BTCUSDT-1m-2020-01-0{d}.zip") for d in (1, 2)]
    apart = json.loads(livelearn("evaluate", "--quiet", "--json", *days).stdout)
    tables = [json.loads(livelearn("evaluate", "--joined", "--quiet", "--json", *order).stdout)
              for order in (days, days[::-1])]
    assert list(tables[0]) == ["joined"] and tables[0] == tables[1]
    horizon = 5
    per_file = [apart[day]["_counts"]["BTCUSDT"]["outcomes"] for day in days]
    assert tables[0]["joined"]["_counts"]["BTCUSDT"]["outcomes"] == sum(per_file) + horizon
    result = livelearn("evaluate", "--joined", "--quiet", *days)
    assert result.returncode == 0, result.stderr
    assert "2 files joined in event time, one pipeline" in result.stdout
    # Under each table its drift alerts against their bounds (none on these two days).
    alerts = tables[0]["joined"]["_drift_alerts"]["BTCUSDT"]
    assert alerts["vectors"] == 2880 and alerts["VARIANCE"]["alerts"] == 0
    assert alerts["VARIANCE"]["bound_per_10k"] == 0.4 and alerts["VARIANCE"]["within_twice_the_bound"]
    assert ("BTCUSDT: drift alerts over 2,880 vectors, per 10k (exact 95% interval; bound 0.4 a channel, "
            "BASIS 1.6): FEATURE 0, VARIANCE 0, CONCEPT 0, PREDICTION 0, BASIS 0") in result.stdout


@pytest.mark.heavy
def test_evaluate_with_jobs_gives_each_file_the_table_one_process_gives_it():
    """`evaluate FILE... --jobs 2`: each file in a process of its own, the tables (per file and pooled,
    drift alerts included) equal to those of the files run one after another here."""
    import json

    days = [str(ROOT / "data/binance/klines/spot" / name)
            for name in ("BTCUSDT-1m-2020-01-01.zip", "ETHUSDT-1m-2022-08-14.zip", "BTCUSDT-1m-2020-01-02.zip")]
    one = livelearn("evaluate", "--quiet", "--json", *days)
    many = livelearn("evaluate", "--json", "--jobs", "2", *days)
    assert one.returncode == 0 and many.returncode == 0, one.stderr + many.stderr
    tables = json.loads(one.stdout)
    assert set(tables) == {*days, "all files"} and json.loads(many.stdout) == tables
    assert [line for line in many.stderr.splitlines() if line.startswith("evaluate: ")] == [
        f"evaluate: {i}/3 files done ({day.rsplit('/', 1)[1]})" for i, day in enumerate(days, 1)]
    for value in ("0", "two", "1.5"):
        refused = livelearn("evaluate", "--jobs", value, days[0])
        assert refused.returncode == 2, refused.stderr
        assert f"--jobs {value}: the number of processes must be at least 1, or auto" in refused.stderr


@pytest.mark.heavy
def test_evaluate_shares_files_among_processes_by_default_where_they_hold_a_megabyte():
    """`--jobs auto`, the default: the three shipped captures (2.8 MB) in processes of their own where
    there is more than one CPU to run them (the per-file lines say so), the four kline days (268 KB)
    here, one after another."""
    import json

    from cli.processes import auto_file_jobs, usable_cpus

    folders = {name: ROOT / "data/binance" / name for name in ("ws", "klines")}
    for name, folder in folders.items():
        sizes = [path.stat().st_size for path in folder.rglob("*") if path.is_file()]
        expected = auto_file_jobs(sizes, usable_cpus())
        assert expected == (1 if name == "klines" else min(usable_cpus(), 3))
        run = livelearn("evaluate", "--json", str(folder))
        assert run.returncode == 0, run.stderr
        done = [line.split(" (")[0] for line in run.stderr.splitlines() if line.startswith("evaluate: ")]
        assert done == ([f"evaluate: {i}/{len(sizes)} files done" for i in range(1, len(sizes) + 1)]
                        if expected > 1 else []), run.stderr
        assert len(json.loads(run.stdout)) == len(sizes) + 1  # each file and all of them


def test_backtest_jobs_is_a_count_or_auto_and_a_wrong_one_is_refused_before_the_broker_is_asked():
    for value in ("0", "two", "-1", "1.5", "\u00b2"):
        refused = livelearn("backtest", "--jobs", value, env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
        assert refused.returncode == 2, refused.stderr
        assert f"--jobs {value}: the number of processes must be at least 1, or auto" in refused.stderr


def test_evaluate_with_jobs_says_so_when_a_process_dies():
    """A process of `evaluate --jobs` killed (as the OOM killer would): one line saying what happened
    and what to do, exit 1, not a traceback or a wait for a result that cannot come."""
    import os
    import signal
    import subprocess
    import sys
    import time

    days = [str(ROOT / "data/binance/klines/spot" / name)
            for name in ("BTCUSDT-1m-2020-01-01.zip", "ETHUSDT-1m-2022-08-14.zip", "BTCUSDT-1m-2020-01-02.zip")]
    run = subprocess.Popen([sys.executable, "-m", "cli.main", "evaluate", "--quiet", "--jobs", "2", *days], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, killed = time.monotonic() + 60, None
    while killed is None and time.monotonic() < deadline and run.poll() is None:
        children = [int(pid) for task in os.listdir(f"/proc/{run.pid}/task")
                    for pid in open(f"/proc/{run.pid}/task/{task}/children").read().split()]
        # The pool's workers (spawned: each runs multiprocessing's spawn_main), not its resource tracker.
        workers = [pid for pid in children if b"spawn_main" in open(f"/proc/{pid}/cmdline", "rb").read()]
        if workers:
            time.sleep(0.5)  # before it can have finished a file (its import alone takes about 2 s here)
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.05)
    out, err = run.communicate(timeout=120)
    assert killed is not None
    assert run.returncode == 1, err
    assert "a process evaluating the files ended before its result (killed, or out of memory?)" in err
    assert "Traceback" not in err


def test_evaluate_joined_refuses_two_files_of_one_pair_over_the_same_time(tmp_path):
    """One day given twice (here in two folders) merged would be one series zigzagging between the two
    files: a clear error, exit 2, before any table. Files that follow each other in time but sit in
    two market folders (spot/ and um/: a spot and a futures pair of one name) are refused as well."""
    import shutil

    days = ROOT / "data/binance/klines/spot"
    for folder in ("a", "b"):
        (tmp_path / "twice" / folder).mkdir(parents=True)
        shutil.copy(days / "BTCUSDT-1m-2020-01-01.zip", tmp_path / "twice" / folder)
    result = livelearn("evaluate", "--joined", "--quiet", str(tmp_path / "twice"))
    assert result.returncode == 2, result.stdout
    assert "both hold BTCUSDT kline ticks over the same time" in result.stderr
    assert result.stdout == ""
    for market, day in (("spot", "01"), ("um", "02")):
        (tmp_path / "markets" / market).mkdir(parents=True)
        shutil.copy(days / f"BTCUSDT-1m-2020-01-{day}.zip", tmp_path / "markets" / market)
    result = livelearn("evaluate", "--joined", "--quiet", str(tmp_path / "markets"))
    assert result.returncode == 2, result.stdout
    assert "hold BTCUSDT of two markets (spot, um)" in result.stderr
    assert "Evaluate a spot and a futures dump of one name apart" in result.stderr


def test_replay_refuses_one_pair_name_of_two_markets_before_sending_anything(tmp_path):
    """A spot and a USD-M futures dump of one name (Binance calls both BTCUSDT) in one replay would be
    one series in the ticks topic. The replay stops with exit 2 and says what to do before it needs a
    broker (none runs here: the bootstrap server points nowhere); with ``--symbol`` naming one file's
    pair apart it would go on."""
    import shutil

    days = ROOT / "data/binance/klines"
    for market, source in (("spot", "spot/BTCUSDT-1m-2020-01-01.zip"), ("um", "um/BTCUSDT-1m-2022-09-05.zip")):
        (tmp_path / market).mkdir()
        shutil.copy(days / source, tmp_path / market)
    result = livelearn("replay", "--quiet", str(tmp_path / "spot"), str(tmp_path / "um"),
                       env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "hold BTCUSDT of two markets (spot, um)" in result.stderr
    assert "Replay each market on its own" in result.stderr
    assert result.stdout == ""


def test_a_mirror_trees_mark_and_index_price_klines_are_not_taken_for_trades(tmp_path):
    """data.binance.vision names a pair's index-price klines as its traded klines; only the folder
    differs. In one tree with the trades the index price sorted first, so a replay published it and
    refused every traded kline of the day as a conflicting tick. A folder's are left out with a line; one
    named alone is read only with --format."""
    import json
    import shutil

    day = ROOT / "data/binance/klines/um/BTCUSDT-1m-2022-09-05.zip"
    trades = tmp_path / "futures/um/daily/klines/BTCUSDT/1m" / day.name
    index = tmp_path / "futures/um/daily/indexPriceKlines/BTCUSDT/1m" / day.name
    for path in (trades, index):
        path.parent.mkdir(parents=True)
        shutil.copy(day, path)
    result = livelearn("evaluate", "--quiet", "--json", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)) == [str(trades)]
    assert f"{index}: BTCUSDT's index price, not its trades: left out" in result.stderr

    alone = livelearn("evaluate", "--quiet", str(index))
    assert alone.returncode == 1 and "BTCUSDT's index price, not its trades: not read" in alone.stderr
    assert livelearn("evaluate", "--quiet", "--format", "klines", str(index)).returncode == 0

    from bench.common import real_data

    assert real_data([str(tmp_path)]).klines == (trades,)


@pytest.mark.heavy
def test_live_asks_for_one_view_of_the_fills_by_default_and_warns_of_more():
    """Trades, aggregate trades and klines are three views of the same fills, and the worker reads a
    symbol's price ticks as one series: `live`'s default asked for all three, so each fill entered the
    features two or three times. The default is aggregate trades and book tickers; more than one view
    is warned of before anything else (here the broker is unreachable, exit 2)."""
    from cli.main import build_parser

    args = build_parser().parse_args(["live"])
    assert args.streams == "aggTrade,bookTicker"
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "LIVELEARN_BINANCE_WS_URL": "ws://127.0.0.1:9"}
    mixed = livelearn("live", "--streams", "trade,kline_1m,bookTicker", "--seconds", "1", env=env, timeout=120)
    assert "warning: trade, kline_1m are views of the same fills" in mixed.stderr
    plain = livelearn("live", "--seconds", "1", env=env, timeout=120)
    assert "views of the same fills" not in plain.stderr and plain.returncode == mixed.returncode == 2
