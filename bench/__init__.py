"""pandanode's benchmark harness: real nodes on loopback, figures against same-run baselines.

Run ``make bench`` (or ``python -m bench --help`` for the scenarios and their size flags). A
scenario is one decorated async function (see :mod:`bench.registry`); the scenarios live in
:mod:`bench.scenarios`.
"""
