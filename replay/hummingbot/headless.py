"""Run a Hummingbot connector and strategy without the Hummingbot application.

``HummingbotLogger.notify()`` and ``network(..., app_warning_msg=...)`` import
``hummingbot.client.hummingbot_application`` (and through it the whole client, ``pandas_ta``
and the blockchain SDKs) unless they believe they run under a test tool, which they decide by
looking for "pytest" in ``sys.argv``. A headless run makes both plain log calls, which is what
the testing mode does, whatever the command line says. Releases from mid-2025 on have the same
two methods; the patch is undone on exit.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator


@contextlib.contextmanager
def headless() -> Iterator[None]:
    from hummingbot.logger import logger as hb_logger

    cls: Any = hb_logger.HummingbotLogger
    saved = cls.__dict__.get("is_testing_mode"), cls.__dict__.get("notify"), cls.__dict__.get("network")

    def notify(self: logging.Logger, msg: str) -> None:
        self.info(msg)

    def network(self: logging.Logger, log_msg: str, app_warning_msg: str | None = None, *args: Any,
                **kwargs: Any) -> None:
        self.log(_network_level(), log_msg, *args, **kwargs)
        if app_warning_msg is not None:
            self.warning(app_warning_msg)

    cls.is_testing_mode = staticmethod(lambda: True)
    cls.notify = notify
    cls.network = network
    try:
        yield
    finally:
        for name, value in zip(("is_testing_mode", "notify", "network"), saved, strict=True):
            if value is None:
                with contextlib.suppress(AttributeError):
                    delattr(cls, name)
            else:
                setattr(cls, name, value)


def _network_level() -> int:
    try:
        from hummingbot.logger import NETWORK

        return int(NETWORK)
    except ImportError:  # pragma: no cover - every supported release has it
        return logging.INFO
