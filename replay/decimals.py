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
import threading
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


#: per thread, the context an ``exact`` call set (a copy of EXACT) while that call runs
_entered = threading.local()


def exact(func: F) -> F:
    """Run ``func`` in the EXACT decimal context.

    A call made from inside another ``exact`` call (the engine's methods call each other, the
    codec calls the engine) runs in the context the outer call set, as long as it is still the
    current one: entering a fresh copy of the same context again costs more than the call."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        outer = decimal.getcontext()
        if outer is getattr(_entered, "context", None):
            return func(*args, **kwargs)
        context = EXACT.copy()
        decimal.setcontext(context)
        previous = getattr(_entered, "context", None)
        _entered.context = context
        try:
            return func(*args, **kwargs)
        finally:
            _entered.context = previous
            decimal.setcontext(outer)

    return wrapper  # type: ignore[return-value]


def exact_methods(cls: C) -> C:
    """Class decorator: every public method of ``cls`` runs in the EXACT context."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        setattr(cls, name, exact(member))
    return cls


#: the largest amount a request may carry has this many digits before the decimal point, and the
#: finest this many after it: together well inside EXACT's 50 digits, so the engine's tick, step and
#: cost arithmetic on any accepted amount is exact and never raises [INF: VALR's own bounds are
#: undocumented; its amounts are strings of a few dozen digits at most]
MAX_INTEGER_DIGITS = 20
MAX_DECIMAL_PLACES = 20


#: amount_problem's answers by value (the engine asks about the same few prices and amounts over and over)
_PROBLEMS: dict[decimal.Decimal, str | None] = {}
_PROBLEMS_MAX = 4096


def amount_problem(value: decimal.Decimal) -> str | None:
    """Why a finite, positive request amount cannot be taken (too many digits before or after the
    decimal point), or None. Trailing zeros do not count: ``"1.5000"`` has one decimal place.
    Looks at the digits only (no context arithmetic), so any finite value is safe to pass."""
    if not value.is_finite() or not value:
        return None
    # the answer depends on the value only (1.50 and 1.5 have the same digits once the trailing
    # zeros are dropped), so equal values may share it
    try:
        return _PROBLEMS[value]
    except KeyError:
        pass
    problem = _amount_problem(value)
    if len(_PROBLEMS) >= _PROBLEMS_MAX:
        _PROBLEMS.clear()
    _PROBLEMS[value] = problem
    return problem


def _amount_problem(value: decimal.Decimal) -> str | None:
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    n = len(digits)
    while n > 1 and digits[n - 1] == 0:
        n -= 1
        exponent += 1
    if exponent + n > MAX_INTEGER_DIGITS:
        return f"is too large: at most {MAX_INTEGER_DIGITS} digits before the decimal point"
    if exponent < -MAX_DECIMAL_PLACES:
        return f"has more than {MAX_DECIMAL_PLACES} decimal places"
    return None
