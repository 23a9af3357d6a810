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
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
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


# The supervisor's banner: its address, the merged metrics' port, the gateway's HTTP port.
BANNER = re.compile(
    r"pandanode listening on (?P<address>\S+) .*metrics on http://\S+:(?P<metrics>\d+)/metrics"
    r".*HTTP \(GraphQL\) on http://\S+:(?P<http>\d+)"
)


class Output:
    """A child's combined output, read as it comes (a full pipe would block the child)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._process = process
        self._stream = process.stdout
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            with self._lock:
                self._lines.append(line)

    def text(self) -> str:
        """Everything read so far."""
        with self._lock:
            return "".join(self._lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first line that matches ``pattern``; fails with the output if the child exits."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = next(filter(None, map(pattern.search, self._lines)), None)
            if found is not None:
                return found
            exited = self._process.poll()
            if exited is not None:
                self._thread.join(timeout=5)
                pytest.fail(f"the node exited with {exited} at start:\n{self.text()[-5000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {pattern.pattern!r} within {timeout} s:\n{self.text()[-5000:]}")
            time.sleep(0.05)  # poll interval of a bounded wait

    def close(self) -> None:
        """Wait for the end of the output (the child has exited) and close the pipe."""
        self._thread.join(timeout=10)
        self._stream.close()


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
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"),
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
    # As the Dockerfile checks: the wheel holds the C extension (the build stage has gcc).
    subprocess.run(
        [str(app_venv / "bin" / "python"), "-c", "import pandanode.core._verify"], check=True
    )
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
    # Port 0 everywhere: the node binds ports the system picks and its banner says which (a
    # port picked here could be taken by another test's process before the node binds it).
    for name in ("PANDANODE_LISTEN", "PANDANODE_HTTP_LISTEN", "PANDANODE_METRICS_LISTEN"):
        env[name] = "0.0.0.0:0"
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
    output = Output(node)
    try:
        banner = output.wait_for(BANNER, timeout=90)
        address, http, metrics = (banner[group] for group in ("address", "http", "metrics"))
        health_env = {**env, "PANDANODE_LISTEN": f"127.0.0.1:{address.rpartition(':')[2]}"}
        deadline = time.monotonic() + 60
        while True:
            health = subprocess.run(
                ["pandanode", "health"],
                env=health_env,
                capture_output=True,
                text=True,
                check=False,
                user=user,
                group=user,
                extra_groups=groups,
            )
            if health.returncode == 0 or node.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # poll interval of a bounded wait
        assert health.returncode == 0, (health, node.poll(), output.text()[-5000:])
        assert "SERVING" in health.stdout

        with urllib.request.urlopen(f"http://127.0.0.1:{http}/graphql", timeout=10) as answer:
            assert answer.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as answer:
            assert b"pandanode" in answer.read()
        owners = {path.stat().st_uid for path in data.rglob("*")}
        assert owners == {uid}

        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=60) == 0, output.text()[-3000:]
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        output.close()
