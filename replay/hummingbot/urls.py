"""Point a Hummingbot connector at the run's fake server by rewriting its URL constants.

Hummingbot connectors keep their base URLs as module-level constants (``REST_URL``,
``WSS_URL``...) in the connector's package and read them when they build a request, so assigning
the module attributes before the connector is built redirects it without touching its code.

Recognised spellings: every module-level string in the connector's package (the package of the
connector class and its submodules, all imported for the scan) that starts with

- ``https://api.valr.com`` or ``http://api.valr.com``: that prefix becomes the run's REST URL
  (``http://127.0.0.1:PORT``);
- ``wss://api.valr.com`` or ``ws://api.valr.com``: that prefix becomes ``ws://127.0.0.1:PORT``,

so ``"https://api.valr.com"``, ``"https://api.valr.com/v1"``, ``"wss://api.valr.com/ws/account"``
and a template such as ``"wss://api.valr.com{}"`` all follow; the same goes for the string values
of a module-level dict (``{"main": "https://api.valr.com"}``), rewritten in place. A module that
copied a constant with ``from ... import REST_URL`` holds its own module-level string, which is
found the same way.

A connector that builds its URLs another way names them in the scenario::

    [bot.hummingbot.urls]
    "mybot.valr_constants:BASE" = "rest"              # rest | ws | ws_account | ws_trade
    "mybot.valr_constants:STREAM" = "{ws}/ws/account"  # a template with {rest} / {ws}

Every rewrite is undone when the run ends.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import pkgutil
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Iterator, Mapping

from replay.connector.adapter import ServerUrls
from replay.importing import NotFound, import_attribute

log = logging.getLogger(__name__)

REST_PREFIXES = ("https://api.valr.com", "http://api.valr.com")
WS_PREFIXES = ("wss://api.valr.com", "ws://api.valr.com")
OVERRIDE_TARGETS = ("rest", "ws", "ws_account", "ws_trade")


class RedirectError(ValueError):
    """The connector's URLs could not be pointed at the run."""


@dataclass(frozen=True)
class Rewrite:
    module: str
    name: str  # "ATTR" or "ATTR[key]" for a dict value
    old: str
    new: str


def ws_base(urls: ServerUrls) -> str:
    """``ws://127.0.0.1:PORT`` from the run's account-stream URL."""
    scheme, sep, rest = urls.ws_account_url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}{sep}{host}"


def redirect(value: str, urls: ServerUrls) -> str | None:
    """The run's spelling of a VALR URL, or None when ``value`` is not one."""
    lowered = value.lower()
    for prefix in REST_PREFIXES:
        if lowered.startswith(prefix):
            return urls.rest_url.rstrip("/") + value[len(prefix):]
    for prefix in WS_PREFIXES:
        if lowered.startswith(prefix):
            return ws_base(urls) + value[len(prefix):]
    return None


def package_modules(package: str) -> list[ModuleType]:
    """The package and every submodule that imports (a broken one is logged and skipped)."""
    root = importlib.import_module(package)
    modules = [root]
    path = getattr(root, "__path__", None)
    if path is None:
        return modules
    for info in pkgutil.walk_packages(path, prefix=package + "."):
        try:
            modules.append(importlib.import_module(info.name))
        except Exception as exc:  # a fork's stray module must not stop the run
            log.warning("URL scan: cannot import %s (%s: %s); its constants are not redirected",
                        info.name, type(exc).__name__, exc)
    return modules


def plan(package: str, urls: ServerUrls, overrides: Mapping[str, str] | None = None) -> list[Rewrite]:
    """Every rewrite that points ``package``'s connector at ``urls`` (nothing is changed yet)."""
    rewrites: list[Rewrite] = []
    for module in package_modules(package):
        for name, value in list(vars(module).items()):
            if name.startswith("__"):
                continue
            if isinstance(value, str):
                new = redirect(value, urls)
                if new is not None:
                    rewrites.append(Rewrite(module.__name__, name, value, new))
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(item, str) and (new := redirect(item, urls)) is not None:
                        rewrites.append(Rewrite(module.__name__, f"{name}[{key!r}]", item, new))
    for target, spec in (overrides or {}).items():
        rewrites.append(_override(target, spec, urls))
    return rewrites


def _override(target: str, spec: str, urls: ServerUrls) -> Rewrite:
    key = f"bot.hummingbot.urls.{target}"
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise RedirectError(f"{key}: expected 'package.module:ATTRIBUTE'")
    try:
        current = import_attribute(module_name, attr)
    except NotFound as exc:
        raise RedirectError(f"{key}: {exc}") from None
    named = {"rest": urls.rest_url, "ws": ws_base(urls), "ws_account": urls.ws_account_url,
             "ws_trade": urls.ws_trade_url}
    if spec in named:
        new = named[spec]
    elif "{rest}" in spec or "{ws}" in spec:
        new = spec.replace("{rest}", urls.rest_url).replace("{ws}", ws_base(urls))
    else:
        raise RedirectError(f"{key}: expected one of {', '.join(OVERRIDE_TARGETS)} or a template with "
                            f"{{rest}} / {{ws}}, got {spec!r}")
    return Rewrite(module_name, attr, str(current), new)


def _set(rewrite: Rewrite, value: str) -> None:
    module = sys.modules[rewrite.module]
    name, bracket, key = rewrite.name.partition("[")
    if bracket:
        target = getattr(module, name)
        for k in target:
            if f"{k!r}]" == key:
                target[k] = value
                return
        raise KeyError(rewrite.name)  # pragma: no cover - planned from this very dict
    setattr(module, name, value)


@contextlib.contextmanager
def redirected(rewrites: list[Rewrite]) -> Iterator[list[Rewrite]]:
    """Apply ``rewrites`` for the block; undo them on exit, last first."""
    done: list[Rewrite] = []
    try:
        for r in rewrites:
            _set(r, r.new)
            done.append(r)
        yield rewrites
    finally:
        for r in reversed(done):
            _set(r, r.old)


def describe(rewrites: list[Rewrite]) -> list[dict[str, Any]]:
    """The rewrites as trace data."""
    return [{"module": r.module, "name": r.name, "from": r.old, "to": r.new} for r in rewrites]
