"""Run the fuzz targets under atheris (libFuzzer), one process per target.

    python -m tests.fuzz.run [TARGET …] [--seconds 300] [--seed 1] [--out .fuzz]

Each target fuzzes for ``--seconds`` in a process of its own (coverage instrumentation never
reaches the parent), starting from its kept corpus ``tests/fuzz/corpus/<target>/``. New inputs
go to ``<out>/corpus/<target>/`` and a crashing input to ``<out>/crashes/``; the kept corpus is
only read. To keep interesting new inputs, minimise them into the kept corpus with
``--merge`` (libFuzzer's ``-merge=1``). Prints one line per target with its executions; exits 1
if any target found a crash, a timeout or ran out of memory.

``python -m tests.fuzz.run --worker TARGET <libFuzzer flags>`` is the process of one target.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["CORPUS", "REPO", "FuzzRun", "fuzz", "main"]

REPO: Final = Path(__file__).resolve().parents[2]
CORPUS: Final = Path(__file__).resolve().parent / "corpus"
# Target names without importing the targets (that import belongs inside the instrumentation).
NAMES: Final = (
    "entry",
    "operation",
    "varu64",
    "hash",
    "schema_id",
    "page_token",
    "listing",
    "events",
    "lan",
)
_DONE: Final = re.compile(r"Done (\d+) runs in (\d+) second")
_EXECUTED: Final = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_COVERAGE: Final = re.compile(r"cov: (\d+) ft: (\d+) corp: (\d+)/")
_PER_INPUT_TIMEOUT: Final = 10
_RSS_LIMIT_MB: Final = 2048
_ARGV0: Final = "PANDANODE_FUZZ_ARGV0"


@dataclass(frozen=True, slots=True)
class FuzzRun:
    """The result of fuzzing one target.

    Attributes:
        target: Its name.
        returncode: The worker's exit code (0: no finding).
        executions: Inputs run (libFuzzer's count), None if it did not say.
        coverage: The last ``(cov, ft, corpus size)`` libFuzzer reported: covered edges,
            features, inputs in the corpus; None if it did not say.
        output: The worker's output (libFuzzer's log and any traceback).
    """

    target: str
    returncode: int
    executions: int | None
    coverage: tuple[int, int, int] | None
    output: str

    @property
    def ok(self) -> bool:
        """Whether the run ended without a finding."""
        return self.returncode == 0


def fuzz(
    target: str,
    seconds: int,
    *,
    seed: int = 1,
    out: Path,
    merge: bool = False,
    timeout: float | None = None,
) -> FuzzRun:
    """Fuzz one target in a subprocess for ``seconds`` (or merge its new inputs).

    Args:
        target: A name of :data:`NAMES`.
        seconds: libFuzzer's ``-max_total_time``.
        seed: libFuzzer's ``-seed`` (a fixed seed: the same mutations on the same build).
        out: Where new inputs (``corpus/<target>``) and crashes (``crashes/``) go.
        merge: Instead of fuzzing, minimise ``out``'s inputs into the kept corpus.
        timeout: Kill the worker after this many seconds (default: ``seconds`` + 60).
    """
    kept = CORPUS / target
    found = out / "corpus" / target
    crashes = out / "crashes"
    for folder in (kept, found, crashes):
        folder.mkdir(parents=True, exist_ok=True)
    flags = [
        f"-seed={seed}",
        f"-timeout={_PER_INPUT_TIMEOUT}",
        f"-rss_limit_mb={_RSS_LIMIT_MB}",
        f"-artifact_prefix={crashes}/{target}-",
        "-print_final_stats=1",
    ]
    if merge:
        flags += ["-merge=1", str(kept), str(found)]
    else:
        flags += [f"-max_total_time={seconds}", str(found), str(kept)]
    # libFuzzer runs argv[0] again for -merge=1: make it a program that is this worker.
    program = out / f"worker-{target}.sh"
    program.write_text(
        f"#!/bin/sh\ncd {shlex.quote(str(REPO))} && exec {shlex.quote(sys.executable)} "
        f'-m tests.fuzz.run --worker {target} "$@"\n'
    )
    program.chmod(0o755)
    env = {**os.environ, "PYTHONHASHSEED": "0", _ARGV0: str(program)}
    completed = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", "--worker", target, *flags],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout if timeout is not None else seconds + 60,
        check=False,
    )
    output = completed.stdout + completed.stderr
    executions = None
    for pattern in (_EXECUTED, _DONE):
        match = pattern.search(output)
        if match is not None:
            executions = int(match.group(1))
            break
    coverage = None
    reports = _COVERAGE.findall(output)
    if reports:
        edges, features, inputs = reports[-1]
        coverage = (int(edges), int(features), int(inputs))
    return FuzzRun(target, completed.returncode, executions, coverage, output)


def _worker(target: str, flags: list[str]) -> None:
    import atheris  # only workers need it

    # atheris is a compiled module without type information.
    with atheris.instrument_imports(include=["pandanode"]):  # pyright: ignore[reportAttributeAccessIssue]
        from tests.fuzz.targets import TARGETS, quiet

    chosen = TARGETS[target]
    flags = [*flags, f"-max_len={chosen.max_len}"]
    atheris.Setup([os.environ.get(_ARGV0, sys.argv[0]), *flags], chosen.run)
    with quiet():
        atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    """Fuzz the named targets (all by default) one after the other; see the module doc."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--worker"]:
        _worker(args[1], args[2:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__)
    parser.add_argument("targets", nargs="*", choices=[[], *NAMES], default=[])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", 300)))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / ".fuzz")
    parser.add_argument("--merge", action="store_true", help="minimise new inputs into the corpus")
    options = parser.parse_args(args)
    failed = []
    for target in options.targets or NAMES:
        run = fuzz(target, options.seconds, seed=options.seed, out=options.out, merge=options.merge)
        cov, features, inputs = run.coverage or (None, None, None)
        print(
            f"{target:12} executions={run.executions} cov={cov} ft={features} corpus={inputs} "
            f"exit={run.returncode}",
            flush=True,
        )
        if not run.ok:
            failed.append(run)
            print(run.output[-6000:], file=sys.stderr)
    for run in failed:
        print(f"FINDING in {run.target}: see {options.out / 'crashes'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
