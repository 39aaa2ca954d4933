"""Skill of the default ensemble on every shipped real series, against the no-skill references.

Each file runs through the worker's own partition pipeline in process (what `livelearn evaluate FILE`
does), with default settings except where a row says otherwise:

* the four days of one-minute klines (horizon 5 klines): where there is no skill to find; each day,
  then the days pooled (what ``livelearn evaluate`` prints for several files);
* a pair's consecutive days as one run (what ``livelearn evaluate --joined`` does): the models learn
  through the days as a worker that read them live, so what they published after days, not hours, of
  learning is scored (here the two BTCUSDT days of January 2020; weeks with ``--data``);
* three weeks of distinct days built from the kline days (``bench/distinct_days.py``), joined, in three
  orders: what the models publish after weeks of days that differ (recycled days, so no evidence of
  skill on real weeks; a loss to the references would be a defect);
* the same days with a steady trend added to their prices (``--trend``, 0.15 standard deviations of
  the day's five-minute log returns per five minutes: 57-59% of the outcomes up), a stand-in for the
  strongly trending days that the shipped data lack: there the running prior beats the constant 0.5,
  and the ensemble has to follow it;
* the two spot trade + book-ticker captures and the futures one (31 seconds of four thinly traded
  pairs: a few hundred outcomes, too few to show skill), with outcomes on the mid price: next mid
  change at every book ticker (``LIVELEARN_PREDICT_ON=book LIVELEARN_LABEL=next_change``), one second
  ahead at every book ticker (``LIVELEARN_HORIZON_SECONDS=1``), and five trades ahead at every trade
  (the default); and the last of these again with each capture read in the order its lines were
  received (``livelearn evaluate --order received``: the ticks and order a worker reading `live` got;
  the rows above sort by event time, where a spot book ticker, stamped when received, lags the trades);
* Phishing and the Elec2 sample (labelled datasets, delays 3 and 5): the ensemble against its members.

Prints each table and one ``RESULT`` line per case: log-loss of the ensemble and of the references,
skill against the running prior and the constant with intervals, and for the captures the skill of the
queue-imbalance-only logistic regression and of the last trade's side beside the ensemble's. About three minutes here with two processes.

Usage: python bench/skill.py [--quick] [--trend SD] [--jobs N] [--data PATH...]   (--quick: klines and one
capture setting only; --jobs: files run at once, each in its own process, one per CPU (at most four)
by default, the output the same whatever it is; --data: files or folders of other real data, kline
dumps (daily or monthly) told by their names, other files captures)
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from common import SHARED, Processes, real_data, result
from distinct_days import complete_days, distinct_weeks_of, write_kline_days

from agents.settings import Settings
from cli.evaluate import pooled_over_files, render, run_file, run_files
from connectors.synth import kline_dump_with_trend as with_trend


def rows_of(summary: dict) -> tuple[str, dict] | None:
    """The one symbol's rows, or the pooled rows of several (a capture of many pairs); None without
    any outcome (a capture without book tickers, at book tickers)."""
    symbols = [s for s in summary if not s.startswith("_")]
    if not symbols:
        return None
    symbol = "pooled" if "pooled" in symbols else symbols[0]
    return symbol, summary[symbol]


def report(case: str, summary: dict, seconds: float, **extra) -> None:
    found = rows_of(summary)
    if found is None or "ensemble" not in found[1]:
        print(f"== {case}: no scored outcome")
        result("skill", case=case, outcomes=0)
        return
    symbol, rows = found
    print(render(summary, f"== {case}"))
    ensemble = rows["ensemble"]
    best = min(rows["constant"]["log_loss"], rows["prior"]["log_loss"])
    fields = {
        "case": case, "symbol": symbol, "outcomes": summary["_counts"][symbol]["outcomes"],
        "flat_share": summary["_counts"][symbol]["flat_share"], "ensemble_log_loss": ensemble["log_loss"],
        "constant_log_loss": rows["constant"]["log_loss"], "prior_log_loss": rows["prior"]["log_loss"],
        "excess_over_best_no_skill": ensemble["log_loss"] - best,
        "skill_vs_prior": [ensemble["skill_vs_prior"], ensemble["skill_vs_prior_low"], ensemble["skill_vs_prior_high"]],
        "skill_vs_constant": [ensemble["skill_vs_constant"], ensemble["skill_vs_constant_low"],
                              ensemble["skill_vs_constant_high"]],
        "seconds": round(seconds, 1), **extra,
    }
    if "trade_side" in rows:
        side = rows["trade_side"]
        fields["trade_side_skill_vs_constant"] = [side["skill_vs_constant"], side["skill_vs_constant_low"],
                                                  side["skill_vs_constant_high"]]
    if "queue_imbalance" in rows:
        qi = rows["queue_imbalance"]["skill_vs_prior"]
        fields["queue_imbalance_skill_vs_prior"] = qi
        fields["ensemble_share_of_queue_imbalance_skill"] = ensemble["skill_vs_prior"] / qi if qi > 0 else None
    result("skill", **fields)


def datasets(settings: Settings) -> None:
    from connectors.datasets import labelled_vectors
    from streams.evaluation import evaluate_run
    from streams.learning import LearnerConfig
    from streams.pipeline import PartitionPipeline, PipelineConfig

    for source in ("phishing", str(SHARED / "drift" / "elec2_tiny_capymoa.csv")):
        for delay in (3, 5):
            started = time.perf_counter()
            config = PipelineConfig(learner=LearnerConfig(horizon_ticks=delay), drift_response=False)
            pipeline = PartitionPipeline(config)
            records: dict[str, list[dict]] = {"predictions": [], "outcomes": []}
            for vector, _, _ in labelled_vectors(source):
                if vector is None:
                    raise RuntimeError(f"{source}: a row the dataset reader rejects")
                for output in pipeline.on_vector(vector).records:
                    if output.stage in records:
                        records[output.stage].append(output.record)
            summary = evaluate_run(records["predictions"], records["outcomes"]).summary()
            _, rows = rows_of(summary) or ("", {})
            members = [m for m in config.learner.members if m in rows]
            best_loss = min(rows[m]["log_loss"] for m in members)
            best_accuracy = max(rows[m]["accuracy"] for m in members)
            name = "phishing" if source == "phishing" else "elec2"
            print(render(summary, f"== {name}, delay {delay}"))
            result("skill_dataset", dataset=name, delay=delay, ensemble_log_loss=rows["ensemble"]["log_loss"],
                   best_member_log_loss=best_loss, ensemble_accuracy=rows["ensemble"]["accuracy"],
                   best_member_accuracy=best_accuracy,
                   log_loss_over_best=rows["ensemble"]["log_loss"] - best_loss,
                   accuracy_under_best=best_accuracy - rows["ensemble"]["accuracy"],
                   seconds=round(time.perf_counter() - started, 1))


def run_day(job: tuple[Path, Settings, float]):
    """A kline day through the pipeline (with a trend of ``z`` sd added when ``z`` is not 0), in a worker
    process: its evaluation and the seconds it took."""
    path, settings, z = job
    started = time.perf_counter()
    if not z:
        return run_file(path, settings), time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        return run_file(with_trend(path, z, Path(folder)), settings), time.perf_counter() - started


def run_capture(job: tuple[Path, Settings, str]) -> tuple[dict, float]:
    """A capture through the pipeline, read in ``order`` (connectors.recorded.ORDERS), in a worker process."""
    path, settings, order = job
    started = time.perf_counter()
    return run_file(path, settings, order=order).summary(), time.perf_counter() - started


def run_joined(job: tuple[list[Path], Settings]):
    """A run of consecutive kline days through one pipeline, in a worker process; the evaluation is
    None, with the reason, where the files overlap in time (a day given under two names)."""
    from cli.evaluate import OverlappingFiles

    paths, settings = job
    started = time.perf_counter()
    try:
        return run_files(paths, settings), time.perf_counter() - started, ""
    except OverlappingFiles as exc:
        return None, time.perf_counter() - started, str(exc)


def joined_days(data, base: Settings, processes: Processes) -> None:
    """Each pair's consecutive days as one run, then the runs pooled: what a model that learned through
    the days published, scored against the same references."""
    runs = data.consecutive_days()
    evaluations, seconds = [], 0.0
    outcomes = processes.map(run_joined, [(paths, base) for _, paths in runs])
    for (name, paths), (evaluation, took, problem) in zip(runs, outcomes, strict=True):
        if evaluation is None:
            print(f"klines {name} joined: left out: {problem}", flush=True)
            continue
        evaluations.append(evaluation)
        seconds += took
        report(f"klines {name} joined", evaluation.summary(), took, days=len(paths))
    if len(evaluations) > 1:
        report(f"klines, {len(evaluations)} runs of consecutive days pooled", pooled_over_files(evaluations), seconds)


DISTINCT_ORDERS = (1, 2, 3)


def run_distinct(job: tuple[list[list[dict]], int, Settings]):
    """Three weeks of distinct days (bench/distinct_days.py) in one order, joined, in a worker process."""
    days, seed, settings = job
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_kline_days(distinct_weeks_of(days, 21, seed), Path(folder))
        return run_files(paths, settings), time.perf_counter() - started


def distinct_weeks(data, base: Settings, quick: bool, processes: Processes) -> None:
    """Three weeks of days that differ, built from the kline days (each mirrored or not, its bars
    reversed within the hour or not, its moves x0.75, 1 or 1.3), joined, in three orders (one with
    ``--quick``), then pooled: whether what the models publish after weeks of learning stays at or
    above the no-skill references where days differ. Recycled days carry their source's patterns, so
    skill found here is no evidence of skill on real weeks; skill below zero would be a defect."""
    days = complete_days(path for path in data.klines if "-1m-" in path.name)
    if not days:
        return
    orders = DISTINCT_ORDERS[:1] if quick else DISTINCT_ORDERS
    evaluations, seconds = [], 0.0
    for seed, (evaluation, took) in zip(orders, processes.map(run_distinct, [(days, seed, base) for seed in orders]),
                                        strict=True):
        evaluations.append(evaluation)
        seconds += took
        report(f"klines, 21 distinct days (order {seed}) joined", evaluation.summary(), took, days=21)
    if len(evaluations) > 1:
        report(f"klines, 21 distinct days joined, {len(orders)} orders pooled", pooled_over_files(evaluations), seconds)


def kline_days(paths: list[Path], base: Settings, z: float, processes: Processes) -> None:
    """Every day, then the days pooled (the issue's criterion: the ensemble against the better reference)."""
    trend = f" with a trend of {z} sd" if z else ""
    extra = {"trend_sd": z} if z else {}
    days, seconds = [], 0.0
    for path, (evaluation, took) in zip(paths, processes.map(run_day, [(path, base, z) for path in paths]), strict=True):
        days.append(evaluation)
        seconds += took
        report(f"klines {path.name}{trend}", evaluation.summary(), took, **extra)
    if len(days) > 1:
        report(f"klines, {len(days)} days{trend} pooled", pooled_over_files(days), seconds, **extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", nargs="+", metavar="PATH",
                        help="files or folders of real data instead of the shipped series (kline dumps, daily or monthly, by name, "
                             "any other file a capture; the labelled datasets are left out)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="files run at once, each in its own process (default: one per CPU, at most 4; 1: all in this one)")
    parser.add_argument("--trend", type=float, default=0.15, metavar="SD",
                        help="the trend added to the kline days' copies, in sd of five-minute returns per five "
                             "minutes (0: no trending copies)")
    args = parser.parse_args()
    base = Settings()
    data = real_data(args.data)
    with Processes(args.jobs) as processes:
        kline_days(list(data.klines), base, 0.0, processes)
        joined_days(data, base, processes)
        distinct_weeks(data, base, args.quick, processes)
        one_minute = [path for path in data.klines if "-1m-" in path.name and path.suffix in (".zip", ".csv")]
        if args.trend and one_minute:
            kline_days(one_minute, base, args.trend, processes)
        settings = [("next mid change at book tickers", dataclasses.replace(base, predict_on="book", label="next_change")),
                    ("mid 1 s ahead at book tickers", dataclasses.replace(base, predict_on="book", horizon_seconds="1")),
                    ("mid 5 trades ahead at trades", base)]
        cases = [(label, setting, path, "time") for label, setting in (settings[:1] if args.quick else settings)
                 for path in data.captures]
        if not args.quick:  # what a worker reading `live` met: the order matters at trades, not at book tickers
            cases += [(f"{settings[2][0]}, as received", base, path, "received") for path in data.captures]
        outcomes = processes.map(run_capture, [(path, setting, order) for _, setting, path, order in cases])
        for (label, _, path, order), (summary, took) in zip(cases, outcomes, strict=True):
            name = path.name[5:12] if path.name.startswith("spot_") else path.name
            report(f"{name} {label}", summary, took, order=order)
    if not args.quick and not args.data:
        datasets(base)


if __name__ == "__main__":
    main()
