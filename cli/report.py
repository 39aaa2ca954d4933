"""`livelearn report`: a self-contained HTML page (PNG plots inlined as base64) of one run's topics."""

from __future__ import annotations

import base64
import io
import math
from collections import defaultdict, deque
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from agents.settings import Settings
from cli.topic_reader import read_records
from streams.evaluation import REFERENCES, Evaluation, evaluate_run, read_for_scoring
from streams.scoring import log_loss

ROLLING = 200
# Points a plotted line keeps at most (one in k): a day of ticks is millions of predictions, more
# than an 11-inch plot can show, and drawing them all took minutes.
MAX_POINTS = 5000


def _report_fields(stage: str, record: dict) -> dict:
    """What the report reads of a prediction, an outcome or a vector: the scoring's part
    (:func:`streams.evaluation.read_for_scoring`) plus what the plots draw."""
    kept = read_for_scoring(stage, record)
    extra = {"predictions": ("member_weights", "latency_ms"), "features": ("price",)}.get(stage, ())
    kept.update((k, record[k]) for k in extra if k in record)
    return kept


def load_run(settings: Settings) -> dict[str, list[dict]]:
    """A run's records as the report and the demo read them (of the busy topics, only what they read)."""
    return {
        "predictions": read_records(settings, "predictions", "prediction", keep=partial(_report_fields, "predictions")),
        "features": read_records(settings, "features", "features", keep=partial(_report_fields, "features")),
        "feedback": read_records(settings, "outcomes", "feedback", keep=partial(_report_fields, "outcomes")),
        "alerts": read_records(settings, "alerts", "drift_alert"),
        "model_events": read_records(settings, "model-events", "model_event"),
        "dead_letters": read_records(settings, "dead-letters", "dead_letter"),
    }


def _thinned(*series: list) -> list[list]:
    """One point in k of equally long series, so that at most MAX_POINTS are drawn."""
    step = max(1, math.ceil(len(series[0]) / MAX_POINTS))
    return [values[::step] for values in series]


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _times(ms: list[int]):
    return [datetime.fromtimestamp(t / 1000, UTC) for t in ms]


def build_plots(run: dict[str, list[dict]], evaluation: Evaluation) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    # Symbols and member names come from topics: a '$' in one must not be parsed as mathtext.
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    predictions, feedback, alerts = run["predictions"], run["feedback"], run["alerts"]
    labels = {f["prediction_id"]: f for f in feedback if f["source"] == "market"}
    plots = []
    by_symbol: dict[str, list[dict]] = defaultdict(list)
    for p in predictions:
        by_symbol[p["symbol"]].append(p)
    for symbol, preds in sorted(by_symbol.items()):
        preds.sort(key=lambda p: p["event_time_ms"])
        fig, axes = plt.subplots(4, 1, figsize=(11, 12), sharex=True)
        price_axis, axes = axes[0], axes[1:]
        # Price from the feature vectors (the prediction record does not carry it); predictions drawn
        # on it as up/down markers, at most ~400 of each so that the line stays readable.
        prices = {(v["symbol"], v["event_time_ms"]): v["price"] for v in run.get("features", [])
                  if v["symbol"] == symbol}
        if prices:
            ordered = sorted(prices.items(), key=lambda item: item[0][1])
            price_times, price_values = _thinned([k[1] for k, _ in ordered], [v for _, v in ordered])
            price_axis.plot(_times(price_times), price_values, lw=0.7, color="black", label="price")
            step = max(1, len(preds) // 400)
            for up, marker, colour in ((True, "^", "green"), (False, "v", "red")):
                points = [(p["event_time_ms"], prices[(symbol, p["event_time_ms"])]) for p in preds[::step]
                          if (p["probability_up"] > 0.5) == up and (symbol, p["event_time_ms"]) in prices]
                if points:
                    price_axis.scatter(_times([t for t, _ in points]), [v for _, v in points], s=9, marker=marker,
                                       c=colour, label=f"predicted {'up' if up else 'down'}")
            for a in alerts:
                if a["symbol"] == symbol and a["status"] == "FIRING":
                    price_axis.axvline(_times([a["created_time_ms"]])[0], color="red", lw=0.8, alpha=0.6)
            price_axis.legend(loc="upper left", fontsize=7)
        price_axis.set_ylabel("price")
        price_axis.set_title(f"{symbol}: price with predictions (red lines: drift alerts)")
        times = _times([p["event_time_ms"] for p in preds])
        axes[0].plot(*_thinned(times, [p["probability_up"] for p in preds]), lw=0.6, label="ensemble P(up)")
        hits = [(t, p["probability_up"]) for t, p in zip(times, preds, strict=True)
                if p["prediction_id"] in labels and labels[p["prediction_id"]]["label"] is not None
                and (p["probability_up"] > 0.5) == (labels[p["prediction_id"]]["label"] == 1)]
        if hits:
            axes[0].scatter(*_thinned(*zip(*hits, strict=True)), s=3, c="green", label="correct")
        axes[0].axhline(0.5, color="grey", lw=0.5)
        for a in alerts:
            if a["symbol"] == symbol and a["status"] == "FIRING":
                axes[0].axvline(_times([a["created_time_ms"]])[0], color="red", lw=0.8, alpha=0.6)
        axes[0].set_ylabel("P(up)")
        axes[0].legend(loc="upper right", fontsize=7)
        drawn = math.ceil(len(preds) / MAX_POINTS)
        thinned = f"; one in {drawn} of {len(preds):,} predictions drawn" if drawn > 1 else ""
        axes[0].set_title(f"{symbol}: ensemble probability of up (green: correct{thinned})")
        names = _drawn_forecasters(preds)
        for name in names:
            series_times, acc_series, loss_series = _thinned(*_rolling(name, times, preds, labels))
            style = {"lw": 1.6} if name in ("ensemble", "prior") else {"lw": 0.8}
            axes[1].plot(series_times, acc_series, label=name, **style)
            axes[2].plot(series_times, loss_series, label=name, **style)
        axes[1].set_ylabel(f"accuracy ({ROLLING})")
        axes[2].set_ylabel(f"log-loss ({ROLLING})")
        axes[1].legend(loc="upper right", fontsize=7)
        plots.append((f"{symbol}: price with predictions, P(up), rolling accuracy and log-loss", _png(fig)))

        fig, ax = plt.subplots(figsize=(11, 3))
        members = sorted({n for p in preds for n in p["member_weights"]})
        for name in members:
            ax.plot(*_thinned(times, [p["member_weights"].get(name, math.nan) for p in preds]), label=name)
        ax.set_ylabel("weight")
        ax.legend(fontsize=7)
        plots.append((f"{symbol}: ensemble weights over time{thinned}", _png(fig)))

    symbols = [s for s in evaluation.summary() if s not in ("_counts",)]
    if symbols:
        fig, ax = plt.subplots(figsize=(6, 5))
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, label="perfectly calibrated")
        for symbol in symbols:
            bins = [b for b in evaluation.reliability(symbol) if b["n"]]
            ax.plot([b["forecast"] for b in bins], [b["observed"] for b in bins], marker="o", lw=1,
                    label=f"{symbol} ensemble")
        ax.set_xlabel("predicted probability of up (bin mean)")
        ax.set_ylabel("observed frequency of up")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        ax.set_title("reliability diagram")
        plots.append(("Reliability of the ensemble's probabilities", _png(fig)))

    if alerts:
        fig, ax = plt.subplots(figsize=(11, 3.5))
        kinds = sorted({a["kind"] for a in alerts})
        for kind in kinds:
            chosen = [a for a in alerts if a["kind"] == kind and a["status"] == "FIRING"]
            ax.scatter(_times([a["created_time_ms"] for a in chosen]),
                       [max(a["adjusted_p_value"], 1e-300) for a in chosen], label=kind, s=14)
        ax.set_yscale("log")
        ax.set_ylabel("adjusted p-value")
        ax.legend(fontsize=7)
        ax.set_title("drift alerts: adjusted p-value of the test that fired")
        plots.append(("Drift alerts", _png(fig)))

    latencies = [p["latency_ms"] for p in predictions]
    if latencies:
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.hist(latencies, bins=60)
        ax.set_xlabel("prediction latency in the worker, ms")
        ax.set_yscale("log")
        plots.append(("Prediction latency", _png(fig)))
    return plots


def _drawn_forecasters(predictions: list[dict]) -> list[str]:
    """The ensemble and every published member and reference, less a reference that never had an input
    (the last trade's side on klines says 0.5 throughout: the constant again, left out as the skill
    table leaves it out)."""
    return sorted({name for p in predictions for name, v in p["member_probabilities"].items()
                   if name not in REFERENCES or v != 0.5} | {"ensemble"})


def _rolling(name: str, times: list, predictions: list[dict], labels: dict[str, dict]) -> tuple[list, list, list]:
    """A forecaster's accuracy and log-loss over its last ROLLING scored outcomes, at each one's time."""
    window: deque[tuple[int, float]] = deque()
    hits, loss = 0, 0.0
    series_times, accuracy, losses = [], [], []
    for t, p in zip(times, predictions, strict=True):
        f = labels.get(p["prediction_id"])
        if f is None or f["label"] is None:
            continue
        prob = p["probability_up"] if name == "ensemble" else p["member_probabilities"].get(name)
        if prob is None:
            continue
        y = f["label"]
        point = (int((prob > 0.5) == (y == 1)), log_loss(prob, y))
        window.append(point)
        hits, loss = hits + point[0], loss + point[1]
        if len(window) > ROLLING:
            old_hit, old_loss = window.popleft()
            hits, loss = hits - old_hit, loss - old_loss
        series_times.append(t)
        accuracy.append(hits / len(window))
        losses.append(loss / len(window))
    return series_times, accuracy, losses


def render_page(prefix: str, run: dict[str, list[dict]], summary: dict, plots: list[tuple[str, str]],
                budget_lines: list[str], shown: int = 200) -> str:
    """The page, from ``templates/report.html``. Every string on it comes from a topic (symbols, alert
    ids, test and member names, reasons), so the template engine escapes every value it inserts:
    a record cannot add markup or script to the page."""
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("cli", "templates"), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    from cli.evaluate import _skill, ordered, verdict

    counts = {name: len(records) for name, records in run.items()}
    tables = [(symbol, summary["_counts"].get(symbol, {}),
               [(name, rows[name], _skill(rows[name], "prior"), _skill(rows[name], "constant"))
                for name in ordered(rows)])
              for symbol, rows in summary.items() if symbol != "_counts"]
    return environment.get_template("report.html").render(
        prefix=prefix, counts=counts, tables=tables, verdict=verdict(summary), plots=plots,
        alerts=run["alerts"][:shown], budget_lines=budget_lines, model_events=run["model_events"][-shown:], dead_letters=run["dead_letters"][-shown:])


def write_report(settings: Settings, out: Path, run: dict[str, list[dict]] | None = None) -> Path:
    run = run or load_run(settings)
    evaluation = evaluate_run(run["predictions"], run["feedback"], run.get("features"))
    from cli.evaluate import alert_budget

    budget = alert_budget(settings, run["predictions"], run["alerts"])
    page = render_page(settings.topic_prefix, run, evaluation.summary(), build_plots(run, evaluation), budget.lines())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out
