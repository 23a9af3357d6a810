"""deploy/Dockerfile's steps, replayed without a container engine, build a node that serves.

This machine has the docker client but no engine, and reaches no registry that serves the base
image, so the image is replayed instead of built: the build stage's ``COPY`` lines choose the
build context (a file the Dockerfile forgets to copy breaks the wheel here as it would in
``docker build``), both lock files install with ``--require-hashes`` into fresh virtual
environments, the wheel is built without build isolation and installed, ``pip check`` passes;
then the runtime stage's ``ENV`` starts ``pandanode up`` as the image's unprivileged user, and
the ``HEALTHCHECK`` command says SERVING. What only a real engine shows (the base image's
libraries, the read-only root file system of compose) is not covered.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_dockerfile import DOCKERFILE, instructions
from .tools import REPO

IMAGE_UID = 10001


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions grouped by stage (each list starts with its FROM)."""
    result: list[list[tuple[str, str]]] = []
    for word, args in instructions(text):
        if word == "FROM":
            result.append([])
        if result:
            result[-1].append((word, args))
    return result


def environment(stage: list[tuple[str, str]]) -> dict[str, str]:
    """The ``ENV`` variables a stage sets (``KEY=value`` pairs, shell-quoted)."""
    values: dict[str, str] = {}
    for word, args in stage:
        if word == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                values[key] = value
    return values


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def base_python() -> str:
    """A Python 3.11 that an unprivileged user may run (pyenv's lives under /root)."""
    system = "/usr/bin/python3"
    if Path(system).exists():
        answer = subprocess.run([system, "-c", "import venv, ensurepip"], check=False)
        if answer.returncode == 0:
            return system
    pytest.fail(
        "Debian's python3 with venv is needed to replay the image (apt-get install python3-venv)"
    )


def pip(venv: Path, *args: str, cwd: Path | None = None) -> None:
    answer = subprocess.run(
        [str(venv / "bin" / "pip"), "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        check=False,
    )
    assert answer.returncode == 0, answer.stdout[-2000:] + answer.stderr[-2000:]


@pytest.fixture
def image_root() -> Iterator[Path]:
    # Not under pytest's tmp_path: /tmp/pytest-of-root is 0700 and the image's user must reach it.
    root = Path(tempfile.mkdtemp(prefix="pandanode-image-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def build(root: Path) -> Path:
    """The build stage, replayed; the runtime environment's directory."""
    build_stage = stages(DOCKERFILE.read_text())[0]
    context = root / "src"
    context.mkdir()
    for word, args in build_stage:
        if word != "COPY" or args.startswith("--from"):
            continue
        *sources, _destination = args.split()
        for source in sources:
            target = context / source
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / source).is_dir():
                shutil.copytree(
                    REPO / source,
                    target,
                    symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )
            else:
                shutil.copy2(REPO / source, target)
    python = base_python()
    build_venv, app_venv = root / "opt" / "build", root / "opt" / "pandanode"
    for venv, lock in (
        (build_venv, "deploy/build-requirements.lock"),
        (app_venv, "deploy/requirements.lock"),
    ):
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip(venv, "install", "--require-hashes", "--no-deps", "-r", str(context / lock))
    dist = context / "dist"
    pip(
        build_venv,
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        str(dist),
        ".",
        cwd=context,
    )
    (wheel,) = dist.glob("pandanode-*.whl")
    pip(app_venv, "install", "--no-deps", str(wheel))
    pip(app_venv, "check")
    return app_venv


def test_image_listens_on_every_interface_of_the_container() -> None:
    runtime = environment(stages(DOCKERFILE.read_text())[-1])

    for name in ("PANDANODE_LISTEN", "PANDANODE_HTTP_LISTEN", "PANDANODE_METRICS_LISTEN"):
        assert runtime.get(name, "").startswith("0.0.0.0:"), (
            f"{name} must bind 0.0.0.0 in a container"
        )


def test_replayed_image_runs_the_node_as_its_user_and_passes_its_health_check(
    image_root: Path,
) -> None:
    app_venv = build(image_root)
    data = image_root / "var" / "lib" / "pandanode"
    data.mkdir(parents=True)
    # As root (CI), the node runs as the image's user; otherwise as whoever runs the tests.
    uid = IMAGE_UID if os.geteuid() == 0 else os.geteuid()
    user = uid if uid == IMAGE_UID else None
    groups: list[int] | None = [] if user is not None else None
    os.chown(data, uid, uid if uid == IMAGE_UID else os.getegid())

    env = environment(stages(DOCKERFILE.read_text())[-1])
    ports = {
        name: free_port()
        for name in ("PANDANODE_LISTEN", "PANDANODE_HTTP_LISTEN", "PANDANODE_METRICS_LISTEN")
    }
    for name, port in ports.items():
        env[name] = f"0.0.0.0:{port}"
    env |= {
        "PATH": f"{app_venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(data),
        "PANDANODE_DATA_DIR": str(data),
    }
    node = subprocess.Popen(
        [str(app_venv / "bin" / "pandanode"), "up"],
        env=env,
        cwd=data,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        user=user,
        group=user,
        extra_groups=groups,
    )
    try:
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline and node.poll() is None:
            health = subprocess.run(
                ["pandanode", "health"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                user=user,
                group=user,
                extra_groups=groups,
            )
            if health.returncode == 0:
                break
            time.sleep(0.2)  # poll interval of a bounded wait
        assert health is not None and health.returncode == 0, (health, node.poll())
        assert "SERVING" in health.stdout

        http = ports["PANDANODE_HTTP_LISTEN"]
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/graphql", timeout=10) as answer:
            assert answer.status == 200
        metrics = ports["PANDANODE_METRICS_LISTEN"]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as answer:
            assert b"pandanode" in answer.read()
        owners = {path.stat().st_uid for path in data.rglob("*")}
        assert owners == {uid}

        node.send_signal(signal.SIGTERM)
        output, _ = node.communicate(timeout=60)
        assert node.returncode == 0, output[-3000:]
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
