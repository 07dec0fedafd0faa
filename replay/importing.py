"""Load a named object (``package.module:attr``) the way ``python -m`` would find it.

Used for every "name a thing in your own code" setting: ``--connector module:attr``,
``--connector hummingbot:module:Class`` and ``[bot.hummingbot.urls]``. The current directory is
put on the import path (as ``python -m`` does), so a user's module next to where they run the
command is found.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


class NotFound(LookupError):
    """The module cannot be imported or has no such attribute; the message says which."""


def importable_from(directory: str | None) -> None:
    """Let ``module:attr`` names resolve from ``directory`` too: a worker process (local or on a Dask
    cluster) may have been started elsewhere than the command that submitted its task."""
    if directory is not None and directory not in sys.path:
        sys.path.insert(0, directory)


def import_attribute(module_name: str, attr: str) -> Any:
    """``module_name``'s (dotted) attribute ``attr``."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NotFound(f"cannot import module {module_name!r}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise NotFound(f"module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    return target
