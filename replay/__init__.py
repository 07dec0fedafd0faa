"""valr-replay: a record-and-replay race simulator for VALR trading connectors."""

__version__ = "0.1.0"
