"""Incremental price and volume indicators, one small class each, in the style of River's ``stats``.

An indicator is built from its parameters, which also name what it outputs (``Return(5).names ==
("ret_5",)``) and identify it (``Return(5).spec == ("ret", (5,))``): the feature set's names and its
hash (streams.features) are derived from the configured indicators, so changing a window changes the
names and the feature-set id together and no hand-written list can fall out of step.

Each one keeps its own state and, per bar, writes the outputs that are ready into the symbol's value
dict (absent while warming up, never a placeholder). They run in the order they are configured, and
that order is the order of the values: River's models sum over the features in it, so it is part of
the output. Every formula and its warm-up is documented in :mod:`streams.features`; the arithmetic
here is that module's, operation for operation, so vectors are bit-identical to what it produced
before indicators were separate objects.

>>> bar = Bar()
>>> rsi = RSI(14)
>>> values = {}
>>> for t, price in enumerate([100.0, 101.0, 100.5] * 6, start=1):
...     values = {}
...     bar.set(t, "TRADE", t * 1000, price, price, price, 1.0, price, None, None)
...     rsi.update(bar, values)
>>> rsi.names, rsi.spec, round(values["rsi_14"], 6)
(('rsi_14',), ('rsi', (14,)), 52.101099)
"""

from streams.indicators.bars import ATR, CCI, Range, Stochastic
from streams.indicators.base import DAY_MS, HISTORY, Bar, Indicator
from streams.indicators.price import MACD, RSI, SMA, Bollinger, Momentum, Return, Volatility
from streams.indicators.volume import VWAP, SessionVWAP, TakerBuyShare, TradeSigns, Volume

__all__ = ["ATR", "CCI", "DAY_MS", "HISTORY", "MACD", "RSI", "SMA", "VWAP", "Bar", "Bollinger", "Indicator", "Momentum",
           "Range", "Return", "SessionVWAP", "Stochastic", "TakerBuyShare", "TradeSigns", "Volatility", "Volume"]
