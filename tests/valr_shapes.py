"""Compare a message the fake produced with a fixture written from VALR's documented example.

A fixture (``tests/fixtures/valr/<transport>/<name>.json``) holds VALR's example and what may
differ, each with a reason:

- ``example``: VALR's example, written from its source (``source``, ``confidence``);
- ``optional``: paths VALR sends only sometimes (e.g. ``data.customerOrderId``): present or
  absent on either side;
- ``extra``: paths the fake sends that VALR's example lacks (harmless, see docs/valr-fidelity.md);
- ``omitted``: paths of VALR's example the fake never sends (harmless, same);
- ``nullable``: paths the fake may send as null;
- ``types``: a decided type that overrides the example's (where VALR's examples disagree).

A path is dotted; ``[]`` stands for every item of a list (``data[].orderId``, ``[].currency``).
The comparison is recursive: the key sets must be equal (up to those allowances) and every value
must have the example's JSON type (string, number, boolean, null, object, array).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "valr"


def load(name: str) -> dict:
    """The fixture ``name`` ("account/ORDER_STATUS_UPDATE", "rest/GET_public_time")."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def all_names() -> list[str]:
    return sorted(str(p.relative_to(FIXTURES).with_suffix("")) for p in FIXTURES.rglob("*.json"))


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__  # not JSON at all: always a difference


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def differences(fixture: dict, actual: Any) -> list[str]:
    """Every difference between ``actual`` and the fixture's example that the fixture does not
    allow, as readable lines; [] when they agree."""
    optional = set(fixture.get("optional", {}))
    extra = set(fixture.get("extra", {}))
    omitted = set(fixture.get("omitted", {}))
    nullable = set(fixture.get("nullable", {}))
    types: dict[str, str] = fixture.get("types", {})
    out: list[str] = []

    def walk(exp: Any, act: Any, path: str) -> None:
        want = types.get(path, json_type(exp))
        got = json_type(act)
        if got != want:
            if not (got == "null" and path in nullable):
                out.append(f"{path or '<root>'}: {got} where VALR has {want}")
            return
        if isinstance(exp, dict):
            for key in exp:
                p = _join(path, key)
                if key not in act:
                    if p not in optional and p not in omitted:
                        out.append(f"{p}: missing")
                else:
                    walk(exp[key], act[key], p)
            for key in act:
                p = _join(path, key)
                if key not in exp and p not in optional and p not in extra:
                    out.append(f"{p}: not in VALR's example")
        elif isinstance(exp, list) and exp:
            item_path = f"{path}[]"
            for item in act:
                # A list may mix shapes (a batch's accepted and refused outcomes): each item is
                # held to the example item it differs least from.
                best: list[str] | None = None
                for candidate in exp:
                    before = len(out)
                    walk(candidate, item, item_path)
                    found = out[before:]
                    del out[before:]
                    if best is None or len(found) < len(best):
                        best = found
                out.extend(best or [])

    walk(fixture["example"], actual, "")
    return out


def nonempty_lists(fixture: dict, actual: Any) -> list[str]:
    """Paths where the example has items but ``actual`` has none (nothing was compared there)."""
    out: list[str] = []

    def walk(exp: Any, act: Any, path: str) -> None:
        if isinstance(exp, dict) and isinstance(act, dict):
            for key in exp:
                if key in act:
                    walk(exp[key], act[key], _join(path, key))
        elif isinstance(exp, list) and isinstance(act, list) and exp:
            if not act:
                out.append(path or "<root>")
            for item in act:
                walk(exp[0], item, f"{path}[]")

    walk(fixture["example"], actual, "")
    return out
