"""The simulated VALR exchange: value types, events, order book, matching engine."""

from typing import TYPE_CHECKING

from .engine import Exchange
from .events import *  # noqa: F401,F403
from .model import *  # noqa: F401,F403
from .model import ExchangeError, PairSpec

if TYPE_CHECKING:  # for linters and type checkers; at run time __getattr__ below imports it on first use
    from .background import BackgroundMarket

__all__ = ["Exchange", "ExchangeError", "PairSpec", "BackgroundMarket"]


def __getattr__(name: str):
    # Imported lazily: background.py depends on replay.config, which imports model.py.
    if name == "BackgroundMarket":
        from .background import BackgroundMarket

        return BackgroundMarket
    raise AttributeError(name)
