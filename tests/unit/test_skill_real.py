"""The promise on real market data (issue #14): with default settings the ensemble is never worse than
no skill, by more than 0.002 nats per outcome, on any shipped day of one-minute klines, and pooled not
worse at all than the better no-skill reference. (There is no skill to find there: these are the
files where it must not lose.) Runs the worker's own partition pipeline in process (`livelearn
evaluate FILE`).

The skill gate (streams/skill_gate.py) keeps the forecasts at 0.5 on those days: the members never
show skill there at its level, so the ensemble scores exactly the constant's log-loss (without the
gate, learning cost its regret, about 0.0010 nats per outcome pooled). The futures capture, too short
to show skill, is held to the same level at the next mid change. Where the order book carries signal
(the spot captures) the gate opens and the ensemble keeps at least 90% of the skill of a logistic
regression on queue imbalance alone at the next mid change, 85% one second ahead and 70% five trades
ahead.
"""

from __future__ import annotations

import pytest

from agents.settings import Settings
from cli.evaluate import evaluate_file
from connectors.synth import kline_dump_with_trend
from tests.conftest import DATA

KLINES = sorted((DATA / "binance" / "klines").rglob("*.zip"))


@pytest.fixture(scope="module")
def tables():
    return {path.name: evaluate_file(path, Settings()) for path in KLINES}


@pytest.mark.parametrize("name", [p.name for p in KLINES])
def test_no_file_is_worse_than_no_skill_by_more_than_0_002(tables, name):
    summary = tables[name]
    [symbol] = [s for s in summary if s != "_counts"]
    rows = summary[symbol]
    best = min(rows["constant"]["log_loss"], rows["prior"]["log_loss"])
    assert rows["ensemble"]["log_loss"] <= best + 0.002


def test_pooled_over_the_files_not_worse_than_the_better_no_skill_reference(tables):
    totals = {"ensemble": 0.0, "constant": 0.0, "prior": 0.0}
    for summary in tables.values():
        [symbol] = [s for s in summary if s != "_counts"]
        for name in totals:
            row = summary[symbol][name]
            totals[name] += row["log_loss"] * row["n"]
    assert totals["ensemble"] <= min(totals["constant"], totals["prior"])


@pytest.mark.parametrize("path", [p for p in KLINES if "-1m-" in p.name], ids=lambda p: p.name)
def test_a_steadily_trending_day_is_not_worse_than_the_constant(path, tmp_path):
    """Each shipped day made to trend by 0.1 sd of its five-minute returns every five minutes (about 54%
    of outcomes up; bench/skill.py --trend 0.1). A day's trend is little evidence (its five-minute
    outcomes overlap: about 290 independent ones), so the gate stays closed and the forecast is the
    constant: where the running prior beats the coin the ensemble trails it by the prior's gain (up
    to 0.004 nats per outcome on ETHUSDT 2022-08-14), which is what the gate costs (docs/STATUS.md).
    What must hold: a trend never makes the ensemble worse than the coin by more than 0.002."""
    summary = evaluate_file(kline_dump_with_trend(path, 0.1, tmp_path), Settings())
    [symbol] = [s for s in summary if s != "_counts"]
    rows = summary[symbol]
    assert rows["ensemble"]["log_loss"] <= rows["constant"]["log_loss"] + 0.002


def test_thin_futures_books_at_the_next_mid_change_are_not_worse_than_no_skill():
    """The futures capture (31 s of four thinly traded perpetuals) at the next mid change: a few hundred
    outcomes that mature in bursts at few mid changes (CTKUSDT's 131 at four). Pooled, the ensemble is
    level with the better no-skill reference (0.0019 nats worse, skill against the prior [-0.025,
    +0.020]: a margin of 0.005 is that noise); while the running prior counted every outcome of a
    burst in full it was 0.016 worse than the coin (0.08 on CTKUSDT)."""
    import dataclasses

    settings = dataclasses.replace(Settings(), predict_on="book", label="next_change")
    summary = evaluate_file(DATA / "binance" / "ws" / "cryptofeed_BINANCE_FUTURES.ws.1.0", settings)
    rows = summary["pooled"]
    assert rows["ensemble"]["n"] > 500
    best = min(rows["constant"]["log_loss"], rows["prior"]["log_loss"])
    assert rows["ensemble"]["log_loss"] <= best + 0.005
    assert summary["CTKUSDT"]["ensemble"]["log_loss"] <= summary["CTKUSDT"]["constant"]["log_loss"] + 0.01


@pytest.mark.heavy
@pytest.mark.parametrize("capture,horizon,share,scored", [
    ("spot_btcusdt_20240808.gz", "next_change", 0.9, 15_000), ("spot_ethusdt_20240808.gz", "next_change", 0.9, 15_000),
    ("spot_btcusdt_20240808.gz", "1", 0.85, 15_000), ("spot_btcusdt_20240808.gz", "trades", 0.7, 800)])
def test_where_the_book_has_signal_the_ensemble_keeps_most_of_the_queue_imbalance_skill(capture, horizon, share,
                                                                                        scored):
    """Skill against the running prior, the ensemble's over the queue-imbalance-only logistic's: 172%
    and 124% at the next mid change (the gate opens after 137-150 outcomes). One second ahead 91% on
    BTCUSDT: with ~150 forecasts outstanding a slot sees about one outcome a second, so the gate
    needs 7,069 of the 18,565 outcomes (two minutes of the six) before it opens. Five trades ahead
    (forecasts at trades, the default; 825 outcomes not flat) 78%. Those two were 77% and 49% before
    the rule itself was a member (``imbalance``, streams.models: the mixture's bound against its best
    expert then covers it)."""
    import dataclasses

    settings = Settings()
    if horizon != "trades":
        settings = dataclasses.replace(settings, predict_on="book")
        settings = (dataclasses.replace(settings, label="next_change") if horizon == "next_change"
                    else dataclasses.replace(settings, horizon_seconds=horizon))
    summary = evaluate_file(DATA / "binance" / "ws" / capture, settings)
    rows = summary[next(s for s in summary if s != "_counts")]
    assert rows["ensemble"]["n"] > scored
    assert rows["ensemble"]["skill_vs_prior"] >= share * rows["queue_imbalance"]["skill_vs_prior"] > 0
