"""The protos pass ``buf lint`` (buf.yaml) and ``buf breaking`` against the previous commit; the
dependency floors are the versions the generated code checks for."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from .tools import REPO, previous_protos, run, tool

BROKEN_MESSAGE = """
message broken_message_name {
  string SomeField = 1;
}
"""


def copy_protos(dest: Path) -> Path:
    shutil.copytree(REPO / "protos", dest / "protos", ignore=shutil.ignore_patterns("*.py*"))
    shutil.copy(REPO / "buf.yaml", dest / "buf.yaml")
    return dest


def git(repo: Path, *args: str) -> None:
    answer = run(
        "git",
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "-c",
        "commit.gpgsign=false",
        *args,
        cwd=repo,
    )
    assert answer.returncode == 0, answer.stderr


def test_buf_lint_passes_on_the_protos() -> None:
    answer = run(tool("buf"), "lint", cwd=REPO)

    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_buf_lint_fails_on_a_message_that_breaks_the_naming_rules(tmp_path: Path) -> None:
    copy = copy_protos(tmp_path)
    query = copy / "protos/pandanode/query/v1/query.proto"
    query.write_text(query.read_text() + BROKEN_MESSAGE)

    answer = run(tool("buf"), "lint", cwd=copy)

    assert answer.returncode != 0
    assert "broken_message_name" in answer.stdout
    assert "SomeField" in answer.stdout


def test_buf_breaking_passes_against_the_previous_commit(tmp_path: Path) -> None:
    baseline, why = previous_protos(REPO, tmp_path / "baseline")
    if baseline is None:
        pytest.skip(f"buf breaking: nothing to compare against ({why})")

    answer = run(tool("buf"), "breaking", "--against", tmp_path / "baseline", cwd=REPO)

    assert answer.returncode == 0, f"against {why}: {answer.stdout}{answer.stderr}"


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A git repository holding today's protos and buf.yaml in one commit."""
    repo = copy_protos(tmp_path / "repo")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "protos")
    return repo


def test_previous_protos_is_none_with_a_reason_in_a_repository_of_one_commit(
    history: Path, tmp_path: Path
) -> None:
    baseline, why = previous_protos(history, tmp_path / "baseline")

    assert baseline is None
    assert "no previous commit" in why
    assert not (tmp_path / "baseline").exists()


def test_previous_protos_is_none_in_a_shallow_clone_of_depth_one(
    history: Path, tmp_path: Path
) -> None:
    (history / "README").write_text("second commit\n")
    git(history, "add", "-A")
    git(history, "commit", "-q", "-m", "second")
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{history}", "shallow")

    baseline, why = previous_protos(tmp_path / "shallow", tmp_path / "baseline")

    assert baseline is None
    assert "no previous commit" in why


def test_buf_breaking_fails_when_a_commit_renumbers_a_field(history: Path, tmp_path: Path) -> None:
    ingest = history / "protos/pandanode/ingest/v1/ingest.proto"
    text = ingest.read_text()
    assert "bytes entry = 1;" in text
    ingest.write_text(text.replace("bytes entry = 1;", "bytes entry = 99;", 1))
    git(history, "commit", "-q", "-am", "renumber a field")

    baseline, _ = previous_protos(history, tmp_path / "baseline")
    answer = run(tool("buf"), "breaking", "--against", tmp_path / "baseline", cwd=history)

    assert baseline is not None
    assert answer.returncode != 0
    assert "entry" in answer.stdout


def test_buf_breaking_passes_when_a_commit_only_adds_a_message(
    history: Path, tmp_path: Path
) -> None:
    ingest = history / "protos/pandanode/ingest/v1/ingest.proto"
    ingest.write_text(ingest.read_text() + "\nmessage AddedLater {\n  string note = 1;\n}\n")
    git(history, "commit", "-q", "-am", "add a message")

    baseline, _ = previous_protos(history, tmp_path / "baseline")
    answer = run(tool("buf"), "breaking", "--against", tmp_path / "baseline", cwd=history)

    assert baseline is not None
    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_a_branch_is_compared_with_where_it_forked_not_with_what_main_added_since(
    history: Path, tmp_path: Path
) -> None:
    fork = run("git", "rev-parse", "HEAD", cwd=history).stdout.strip()
    git(history, "checkout", "-q", "-b", "feature")
    (history / "NOTES").write_text("a change outside the protos\n")
    git(history, "add", "-A")
    git(history, "commit", "-q", "-m", "feature work")
    git(history, "checkout", "-q", "main")
    ingest = history / "protos/pandanode/ingest/v1/ingest.proto"
    ingest.write_text(ingest.read_text() + "\nmessage AddedOnMain {\n  string note = 1;\n}\n")
    git(history, "commit", "-q", "-am", "main adds a message")
    git(history, "checkout", "-q", "feature")

    baseline, _ = previous_protos(history, tmp_path / "baseline")
    answer = run(tool("buf"), "breaking", "--against", tmp_path / "baseline", cwd=history)

    assert baseline == fork
    assert answer.returncode == 0, answer.stdout + answer.stderr


def _floor(requirement: str) -> str:
    parsed = Requirement(requirement)
    (spec,) = [s for s in parsed.specifier if s.operator == ">="]
    return spec.version


def test_the_grpc_and_protobuf_floors_are_the_versions_the_generated_code_checks_for() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = {Requirement(r).name: r for r in project["dependencies"]}
    grpc_versions = {
        match.group(1)
        for path in (REPO / "protos").rglob("*_pb2_grpc.py")
        if (match := re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", path.read_text()))
    }
    protobuf_versions = {
        ".".join(match.groups())
        for path in (REPO / "protos").rglob("*_pb2.py")
        if (
            match := re.search(
                r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,"
                r"\s*(\d+),\s*(\d+),\s*(\d+),",
                path.read_text(),
            )
        )
    }
    assert len(grpc_versions) == 1 and len(protobuf_versions) == 1
    for name in ("grpcio", "grpcio-health-checking", "grpcio-status"):
        assert _floor(requirements[name]) == next(iter(grpc_versions)), name
    assert _floor(requirements["protobuf"]) == next(iter(protobuf_versions))
