#!/usr/bin/env python3
"""Run valr-replay from a checkout without installing it: ``python cli.py --help``."""

from replay.cli import main

if __name__ == "__main__":
    main()
