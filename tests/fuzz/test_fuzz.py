"""Every decoder and parser of untrusted input, fuzzed: only its typed errors may escape.

Two checks per target (:mod:`tests.fuzz.targets`): every input of the kept corpus runs
in-process (the seeds, and the input of every finding ever fixed), and atheris fuzzes the target
for a few seconds with a fixed seed in a subprocess of its own, so its coverage instrumentation
stays out of this process. ``FUZZ_TEST_SECONDS`` sets the seconds per target (default 2: with
about 1.5 s to start each worker, some 30 s for all of them on an idle machine); ``make fuzz``
runs longer (``FUZZ_SECONDS``, default 300 per target).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fuzz.run import CORPUS, NAMES, fuzz
from tests.fuzz.seeds import seeds
from tests.fuzz.targets import TARGETS, quiet

SECONDS = int(os.environ.get("FUZZ_TEST_SECONDS", "2"))
SEED = 15


def test_the_runner_and_the_targets_name_the_same_targets() -> None:
    assert set(NAMES) == set(TARGETS)


def test_the_kept_seeds_are_the_generated_ones() -> None:
    for target, inputs in seeds().items():
        for name, data in inputs.items():
            kept = CORPUS / target / f"seed-{name}"
            assert kept.is_file(), f"{kept} is missing: run python -m tests.fuzz.seeds"
            assert kept.read_bytes() == data, f"{kept} is stale: run python -m tests.fuzz.seeds"


@pytest.mark.parametrize("target", NAMES)
def test_every_kept_input_raises_only_typed_errors(target: str) -> None:
    inputs = sorted((CORPUS / target).iterdir())
    assert inputs, f"no kept corpus for {target}"
    with quiet():
        for path in inputs:
            try:
                TARGETS[target].run(path.read_bytes())
            except BaseException as err:
                raise AssertionError(f"{path.name}: {err!r}") from err


@pytest.mark.parametrize("target", NAMES)
def test_fuzzing_finds_nothing(target: str, tmp_path: Path) -> None:
    run = fuzz(target, SECONDS, seed=SEED, out=tmp_path)
    crashes = sorted(path.name for path in (tmp_path / "crashes").iterdir())
    assert run.ok and not crashes, (
        f"fuzzing {target} found {crashes} (exit {run.returncode}); add the input to "
        f"{CORPUS / target}/crash-<what> with the fix:\n{run.output[-4000:]}"
    )
    assert run.executions is not None and run.executions > 0, run.output[-2000:]
