"""Aggregate py-spy ``--format raw`` output (collapsed stacks) into the top costs.

py-spy is run with ``--threads --function --full-filenames``: every line is
``thread (tid): name;frame;frame;… count`` with frames like ``func (/path/file.py:firstline)``,
root first. Three views come out of it, each as a share of all samples (idle threads are not
sampled, so a share is of the node's on-CPU Python time):

- *self*: the innermost frame, i.e. where the time went (native code called from a Python
  function is charged to that function, e.g. RocksDB writes to ``LogStore.commit``);
- *inclusive*: every frame on the stack, counted once per sample;
- *threads*: by thread name (``MainThread``: the event loop; ``verify``: the verification pool;
  ``commit``: the RocksDB writer), and *areas*: the self time grouped by library or module.

py-spy does not see every blocked thread as idle: a pool worker waiting for work (its innermost
frame is ``_worker``), grpc's poller thread (``Thread.run``) and the event loop in ``select``
are still sampled. Such samples are counted as *waiting* and left out of every view, so a share
is of the busy samples.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .procs import ROOT

__all__ = ["Cost", "Profile", "area_of", "parse_raw", "short_path"]

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")
_THREAD = re.compile(r"^thread \((?P<tid>\d+)\): ?(?P<name>.*)$")
_STDLIB = re.compile(r"/lib/python3\.\d+/")

# Innermost frames of a thread that waits (for work, for I/O): not a cost.
_WAITING = {
    ("_worker", "stdlib/concurrent/futures/thread.py"),
    ("Thread.run", "stdlib/threading.py"),
    ("Condition.wait", "stdlib/threading.py"),
    ("Event.wait", "stdlib/threading.py"),
    ("EpollSelector.select", "stdlib/selectors.py"),
}

# Runner frames that sit under everything; left out of the inclusive view.
_PLUMBING = {
    "<module>",
    "main",
    "run",
    "_run",
    "run_forever",
    "run_until_complete",
    "_run_once",
    "Runner.run",
    "BaseEventLoop.run_forever",
    "BaseEventLoop.run_until_complete",
    "BaseEventLoop._run_once",
    "Handle._run",
    "Context.run",
    "Thread._bootstrap",
    "Thread._bootstrap_inner",
    "Thread.run",
    "_worker",
    "_WorkItem.run",
    "_run_module_as_main",
    "_run_code",
}


def short_path(path: str) -> str:
    """A readable file name: relative to the repository, site-packages or the stdlib."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    root = str(ROOT) + "/"
    if path.startswith(root):
        return path[len(root) :]
    match = _STDLIB.search(path)
    if match:
        return "stdlib/" + path[match.end() :]
    return path


def area_of(file: str) -> str:
    """The library or module a (short) file name belongs to, for the areas view."""
    prefixes = (
        ("nacl/", "PyNaCl (Ed25519)"),
        ("rocksdict/", "rocksdict (RocksDB)"),
        ("grpc/", "grpcio"),
        ("google/protobuf/", "protobuf"),
        ("nats/", "nats-py"),
        ("cbor2/", "cbor2"),
        ("blake3/", "blake3"),
        ("stdlib/asyncio/", "asyncio"),
        ("stdlib/concurrent/", "thread pools"),
        ("stdlib/threading", "thread pools"),
    )
    for prefix, area in prefixes:
        if file.startswith(prefix):
            return area
    for package, name in (("core/", "pandanode.core"), ("services/", "pandanode.services")):
        if file.startswith(package):
            module = file[len(package) :].removesuffix(".py").replace("/", ".")
            return f"{name}.{module}"
    if file.startswith("protos/"):
        return "generated protos"
    if file == "<string>":
        return "generated code (dataclass __init__ …)"
    if file.startswith("stdlib/"):
        return "stdlib " + file[len("stdlib/") :].split("/")[0].removesuffix(".py")
    return file


@dataclass(frozen=True, slots=True)
class Cost:
    """One line of a top list: a name and its share of the samples."""

    name: str
    samples: int
    share: float


@dataclass
class Profile:
    """Sample counts of one py-spy recording."""

    samples: int = 0
    waiting: int = 0
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    threads: Counter[str] = field(default_factory=Counter)
    areas: Counter[str] = field(default_factory=Counter)

    def top(self, view: str, n: int) -> list[Cost]:
        """The ``n`` largest costs of a view: ``self``, ``inclusive``, ``threads`` or ``areas``."""
        counter: Counter[str] = {
            "self": self.self_time,
            "inclusive": self.inclusive,
            "threads": self.threads,
            "areas": self.areas,
        }[view]
        total = max(1, self.busy)
        return [Cost(name, count, count / total) for name, count in counter.most_common(n)]

    @property
    def busy(self) -> int:
        """Samples of threads that were not waiting."""
        return self.samples - self.waiting

    def as_json(self, n: int) -> dict[str, object]:
        """The top ``n`` of every view, for the results file."""
        return {
            "samples": self.samples,
            "busy": self.busy,
            **{
                view: [
                    {"name": c.name, "samples": c.samples, "share": c.share}
                    for c in self.top(view, n)
                ]
                for view in ("areas", "self", "inclusive", "threads")
            },
        }


def _frame_name(frame: str) -> tuple[str, str, str]:
    """``(function at short file, function, short file)`` of one frame."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, frame, ""
    file = short_path(match["file"])
    return f"{match['function']} ({file})", match["function"], file


def _thread_group(name: str) -> str:
    """``verify_0`` and ``verify_1`` → ``verify``; ``MainThread`` → ``MainThread (event loop)``."""
    if name == "MainThread":
        return "MainThread (event loop)"
    return re.sub(r"_\d+$", "", name) or "unnamed"


def parse_raw(lines: Iterable[str]) -> Profile:
    """Aggregate collapsed stacks (py-spy ``--format raw``)."""
    profile = Profile()
    for line in lines:
        line = line.rstrip("\n")
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = "unknown"
        match = _THREAD.match(frames[0])
        if match is not None:
            thread = _thread_group(match["name"])
            frames = frames[1:]
        profile.samples += count
        if not frames:
            profile.waiting += count  # a thread in native code only, e.g. a library's poller
            continue
        leaf, leaf_function, leaf_file = _frame_name(frames[-1])
        if (leaf_function, leaf_file) in _WAITING:
            profile.waiting += count
            continue
        profile.threads[thread] += count
        profile.self_time[leaf] += count
        profile.areas[area_of(leaf_file) if leaf_file else leaf] += count
        seen: set[str] = set()
        for frame in frames:
            name, function, _ = _frame_name(frame)
            if function in _PLUMBING or name in seen:
                continue
            seen.add(name)
            profile.inclusive[name] += count
    return profile


def read_raw(path: Path) -> Profile:
    """Aggregate a py-spy raw file."""
    with path.open() as lines:
        return parse_raw(lines)
