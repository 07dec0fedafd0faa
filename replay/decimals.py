"""The decimal context the exchange and the codec compute in, whatever the caller's is.

Decimal arithmetic follows the thread's current context, and libraries change it: the
valr-python client sets the global precision to 8 digits when imported, which would make
the matching engine's sums wrong and its formatting lossy. The pure core therefore does
its arithmetic in a context of its own.
"""

from __future__ import annotations

import decimal
import functools
import inspect
from typing import Any, Callable, TypeVar

EXACT = decimal.Context(
    prec=50,
    rounding=decimal.ROUND_HALF_EVEN,
    Emin=-999999,
    Emax=999999,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


def exact(func: F) -> F:
    """Run ``func`` in the EXACT decimal context."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with decimal.localcontext(EXACT):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def exact_methods(cls: C) -> C:
    """Class decorator: every public method of ``cls`` runs in the EXACT context."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        setattr(cls, name, exact(member))
    return cls
