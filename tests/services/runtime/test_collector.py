"""A service process settles the cyclic garbage collector once it has started."""

from __future__ import annotations

import subprocess
import sys

from pandanode.services.runtime.collector import YOUNG_THRESHOLD


def _run(program: str) -> str:
    # A fresh interpreter: the collector's settings are the whole process's.
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_what_lives_after_start_up_is_frozen_and_young_collections_are_rarer() -> None:
    out = _run(
        "import gc\n"
        "from pandanode.services.runtime.collector import settle_collector\n"
        "settle_collector()\n"
        "print(gc.get_freeze_count() > 0, gc.get_threshold()[0])\n"
    )
    assert out == f"True {YOUNG_THRESHOLD}"


def test_cyclic_garbage_made_after_start_up_is_still_collected() -> None:
    out = _run(
        "import gc, weakref\n"
        "from pandanode.services.runtime.collector import settle_collector\n"
        "settle_collector()\n"
        "class Node:\n"
        "    pass\n"
        "a, b = Node(), Node()\n"
        "a.other, b.other = b, a\n"
        "gone = weakref.ref(a)\n"
        "del a, b\n"
        "gc.collect()\n"
        "print(gone() is None)\n"
    )
    assert out == "True"
