"""The VALR WebSocket message types valr-replay knows, read from ``replay/codec.py``.

The codec is the one place that builds VALR's messages; this module keeps no list of its own.
A type is known when the codec builds a message with it (read from its source, once):

- a string (or a module-level name bound to one) given to a ``"type"`` key in the codec: in a
  dict literal (``{"type": "OPEN_ORDERS_UPDATE", ...}``), a ``dict(type=...)`` call or an
  assignment ``msg["type"] = ...``;
- for an encoder whose type is a parameter (``{"type": kind, ...}`` in
  ``full_book_message(kind, ...)``): the strings its callers in the ``replay`` package pass
  for that parameter (``full_book_message("FULL_ORDERBOOK_UPDATE", ...)``, also inside a
  conditional expression), and those of a ``Literal[...]`` annotation on it;
- a string in one of the codec's module-level ``*_TYPES`` tables (``REQUEST_TYPES``,
  ``RESPONSE_TYPES``, ``INVALID_TYPES``: keys and values alike).

So a message the codec learns to build is known everywhere (a ``[latency]`` key naming its
type, for one) without a second list to keep in step.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Iterator

_TYPE_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")


@functools.lru_cache(maxsize=1)
def known_message_types() -> frozenset[str] | None:
    """Every message type ``replay.codec`` builds; None when its source cannot be read (a
    byte-code-only install), in which case callers cannot tell a typo from a type."""
    from . import codec

    package = Path(codec.__file__).resolve().parent
    return message_types_of(codec, sorted(package.rglob("*.py")))


def message_types_of(module: ModuleType, callers: Iterable[Path] = ()) -> frozenset[str] | None:
    """The message types ``module`` (a codec) builds, as the module docstring describes;
    ``callers`` are the source files whose calls to its encoders count."""
    namespace = vars(module)
    found: set[str] = set()
    for name, value in namespace.items():
        if name.endswith("_TYPES") and not name.startswith("_"):
            found.update(_strings(value))
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return None
    tree = ast.parse(source)
    # encoder name -> [(position, parameter name)] of the parameters that become "type"
    type_params: dict[str, list[tuple[int | None, str]]] = {}
    for func in tree.body:
        if not isinstance(func, ast.FunctionDef):
            continue
        positional = [a.arg for a in (*func.args.posonlyargs, *func.args.args)]
        arguments = {a.arg: a for a in (*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs)}
        for node in ast.walk(func):
            for value in _type_values(node):
                text = _text(value)
                if text is None and isinstance(value, ast.Name):
                    if value.id in arguments:
                        position = positional.index(value.id) if value.id in positional else None
                        type_params.setdefault(func.name, []).append((position, value.id))
                        found.update(_constants(arguments[value.id].annotation))
                        continue
                    bound = namespace.get(value.id)
                    text = bound if isinstance(bound, str) else None
                if text is not None:
                    found.add(text)
    module_file = Path(inspect.getsourcefile(module) or "").resolve()
    trees = [tree]
    for path in callers if type_params else ():
        if path.resolve() == module_file:
            continue
        try:
            text = path.read_text(encoding="utf-8")
            if any(name in text for name in type_params):  # parse only the files that may call one
                trees.append(ast.parse(text))
        except (OSError, UnicodeDecodeError, SyntaxError):
            continue
    for caller in trees:
        for node in ast.walk(caller):
            if isinstance(node, ast.Call):
                found.update(_passed_types(node, type_params))
    return frozenset(t for t in found if _TYPE_RE.match(t))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _strings(item)


def _text(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _constants(node: ast.AST | None) -> Iterator[str]:
    """Every string constant in an expression (``"A" if first else "B"``, ``Literal["A", "B"]``)."""
    if node is None:
        return
    for sub in ast.walk(node):
        text = _text(sub)
        if text is not None:
            yield text


def _type_values(node: ast.AST) -> Iterator[ast.AST]:
    """The expressions ``node`` gives a ``"type"`` key."""
    if isinstance(node, ast.Dict):
        for key, value in zip(node.keys, node.values, strict=True):
            if _text(key) == "type":
                yield value
    elif isinstance(node, ast.Call):
        for kw in node.keywords:
            if kw.arg == "type":
                yield kw.value
    elif isinstance(node, ast.Assign):
        if any(isinstance(t, ast.Subscript) and _text(t.slice) == "type" for t in node.targets):
            yield node.value


def _passed_types(call: ast.Call, type_params: dict[str, list[tuple[int | None, str]]]) -> Iterator[str]:
    """The strings a call to an encoder with a type parameter passes for it."""
    func = call.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    for position, param in type_params.get(name or "", []):
        if position is not None and position < len(call.args):
            yield from _constants(call.args[position])
        for kw in call.keywords:
            if kw.arg == param:
                yield from _constants(kw.value)
