"""Hummingbot connectors under valr-replay: the harness (bot, urls, wallclock, headless, observe) and
our own Hummingbot VALR connector (``valr/``). Nothing here imports Hummingbot at import time; see
docs/hummingbot.md."""
