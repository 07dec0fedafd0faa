"""Stand-ins for "your connector", before and after the fix, for README's "Testing your own connector".

A connector under test is named ``module:attr``: a class or factory that takes keyword options and
returns an object with the adapter's members (docs/adapter.md). Here both versions are the
reference connector: ``buggy`` with the OPEN_ORDERS_UPDATE handler that marks every tracked order
missing from the list as cancelled, ``fixed`` with the handler that reconciles. Yours would wrap
your own connector the same way.
"""

from __future__ import annotations

from typing import Any

from replay.connector.adapter import ReferenceAdapter


def buggy(**options: Any) -> ReferenceAdapter:
    return ReferenceAdapter(**{**options, "policy": "naive"})


def fixed(**options: Any) -> ReferenceAdapter:
    return ReferenceAdapter(**{**options, "policy": "reconcile"})
