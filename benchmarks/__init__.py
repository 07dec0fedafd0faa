"""Benchmarks for ``valr-replay bench``: one module per figure, ``runner`` runs them all.

Every figure is measured next to a baseline run in the same process and the same run (the
physical limit of the stack underneath: a bare websockets server, a bare TCP relay, a raw
file write...), and reported as a ratio to it, so the figures mean something on a noisy
machine.
"""
