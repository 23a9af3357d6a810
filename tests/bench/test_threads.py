"""The ingest main-thread CPU figure: which process, which thread."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.procs import cpu_seconds
from bench.threads import IngestMainThread, main_thread_cpu_seconds

_HOLD_STORE = """
import sys
from pathlib import Path
from pandanode.services.ingest.store import LogStore
store = LogStore(Path(sys.argv[1]) / "ingest")
print("open", flush=True)
sys.stdin.read()
store.close()
"""


def test_the_ingest_process_is_the_descendant_holding_the_store_lock(tmp_path: Path) -> None:
    assert IngestMainThread(os.getpid(), tmp_path).pid() == os.getpid()  # nobody holds it
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_STORE, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "open"
            main = IngestMainThread(os.getpid(), tmp_path)
            assert main.pid() == child.pid
            assert main.cpu()[0] == child.pid
        finally:
            assert child.stdin is not None
            child.stdin.close()  # the child's read ends: it closes the store and exits
            child.wait(timeout=30)


def test_main_thread_cpu_leaves_out_other_threads() -> None:
    burned = 0.0

    def burn() -> None:
        nonlocal burned
        start = time.thread_time()
        while time.thread_time() - start < 0.3:
            pass
        burned = time.thread_time() - start

    main_before, process_before = main_thread_cpu_seconds(os.getpid()), cpu_seconds(os.getpid())
    worker = threading.Thread(target=burn)
    worker.start()
    worker.join()
    main_used = main_thread_cpu_seconds(os.getpid()) - main_before
    process_used = cpu_seconds(os.getpid()) - process_before
    assert burned >= 0.3
    assert process_used >= 0.2  # whole clock ticks: a little under what the thread measured
    assert main_used < 0.1


def test_per_entry_figure_is_withheld_when_the_process_changed_or_too_little_ran() -> None:
    assert IngestMainThread.per_entry_us((1, 1.0), (1, 2.0), 1000) == 1000.0
    assert IngestMainThread.per_entry_us((1, 1.0), (2, 2.0), 1000) is None
    assert IngestMainThread.per_entry_us((1, 1.0), (1, 1.0), 1000) is None
