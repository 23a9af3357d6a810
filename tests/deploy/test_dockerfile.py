"""deploy/Dockerfile passes hadolint and builds the way the issue asks: multi-stage, non-root,
every dependency pinned by hash, a gRPC health check."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from .tools import DEPLOY, REPO, run, tool

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(instruction, arguments) of a Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_hadolint_passes_on_the_dockerfile() -> None:
    answer = run(tool("hadolint"), DOCKERFILE)

    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_hadolint_fails_on_a_broken_copy(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        DOCKERFILE.read_text().replace(
            "ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm",
            "ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm\nFROM python:latest AS unpinned\n"
            "RUN apt-get update && apt-get install curl",
            1,
        )
    )

    answer = run(tool("hadolint"), broken)

    assert answer.returncode != 0
    assert "DL3007" in answer.stdout  # `latest`
    assert "DL3008" in answer.stdout  # apt package without a version


def test_dockerfile_is_multi_stage_non_root_and_health_checked() -> None:
    steps = instructions(DOCKERFILE.read_text())

    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) >= 2 and froms[0].endswith("AS build")
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    users = [args for word, args in final if word == "USER"]
    assert users and not users[-1].startswith(("0", "root"))
    (healthcheck,) = [args for word, args in final if word == "HEALTHCHECK"]
    assert healthcheck.endswith('CMD ["pandanode", "health"]')
    assert ("COPY", "--from=build /opt/pandanode /opt/pandanode") in final
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert runs.count("--require-hashes") == 2


def lock_pins(lock: Path) -> dict[str, str]:
    text = lock.read_text()
    pins = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", text, flags=re.MULTILINE))
    # Every pin carries at least one hash (pip install --require-hashes).
    blocks = re.split(r"^(?=[a-z0-9])", text, flags=re.MULTILINE)
    for block in blocks:
        if "==" in block.splitlines()[0]:
            assert "--hash=sha256:" in block, block.splitlines()[0]
    return {re.sub(r"[-_.]+", "-", name): version for name, version in pins.items()}


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = lock_pins(DEPLOY / "requirements.lock")

    # The image runs the node: the client's dependencies and the `node` extra's.
    for text in [*project["dependencies"], *project["optional-dependencies"]["node"]]:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is not in deploy/requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"deploy/requirements.lock pins {name}=={pins[name]}, outside {text}: run `make lock`"
        )


def test_build_lock_pins_what_the_build_backend_needs() -> None:
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]
    pins = lock_pins(DEPLOY / "build-requirements.lock")

    assert build["build-backend"] == "setuptools.build_meta"
    assert "setuptools" in pins and "wheel" in pins
