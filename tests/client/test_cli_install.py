"""The package as a user installs it: a wheel built from this repository, installed into fresh
virtual environments (not this one), with and without the ``node`` extra.

Slow (a wheel build and two venvs, some 30 s to a few minutes): marked ``packaging``; deselect
with ``-m 'not packaging'``. The wheels of the dependencies are collected once per session
(``pip wheel``, through pip's cache), then every install is ``--no-index`` from them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import venv
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from pandanode.services.node import Node
from pandanode.services.runtime.nats_server import free_port
from tests.services.support import eventually

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
INSTALL_DEADLINE = 600


def _run(
    *command: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=INSTALL_DEADLINE,
        env=env,
        check=False,
    )


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the pandanode wheel built from this repository and every dependency's."""
    house = tmp_path_factory.mktemp("wheelhouse")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = _run(*pip, "wheel", ROOT, "--no-deps", "--wheel-dir", house)
    assert built.returncode == 0, built.stderr
    (wheel,) = house.glob("pandanode-*.whl")
    deps = _run(*pip, "wheel", f"{wheel}[node]", "--wheel-dir", house, "--find-links", house)
    assert deps.returncode == 0, deps.stderr
    return house


async def _arun(*command: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # In a thread: the test's own node answers on this event loop meanwhile.
    return await asyncio.to_thread(_run, *command, env=env)


def _fresh_venv(where: Path, house: Path, requirement: str) -> Path:
    """A new venv (no system site-packages) with ``requirement`` installed from ``house`` only."""
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    python = where / "bin" / "python"
    installed = _run(
        python, "-m", "pip", "--disable-pip-version-check", "install", "--no-index",
        "--find-links", house, requirement,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return where / "bin"


def _env(tmp_path: Path) -> dict[str, str]:
    # Nothing of this checkout or of the dev venv may leak in: no PYTHONPATH, a fresh key file.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PANDANODE_KEY_FILE": str(tmp_path / "key"), "COLUMNS": "200"}


def test_the_wheel_holds_the_files_of_the_linked_folders_not_symlinks(wheelhouse: Path) -> None:
    (wheel,) = wheelhouse.glob("pandanode-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        members = archive.infolist()
    links = [m.filename for m in members if stat.S_ISLNK(m.external_attr >> 16)]
    assert links == []
    names = {m.filename for m in members}
    for source in [
        "core/cbor.py",
        "services/node.py",
        "client/__init__.py",
        "protos/pandanode/ingest/v1/ingest_pb2.py",
    ]:
        member = "pandanode/" + source.removeprefix("protos/pandanode/")
        assert member in names
        with zipfile.ZipFile(wheel) as archive:
            assert archive.read(member) == (ROOT / source).read_bytes()


def test_the_wheel_holds_the_signature_extension_and_its_stub(wheelhouse: Path) -> None:
    (wheel,) = wheelhouse.glob("pandanode-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "pandanode/core/_verify.pyi" in names
    assert "pandanode/core/signatures.py" in names
    if shutil.which(sysconfig.get_config_var("CC").split()[0]) is not None:
        built = [n for n in names if n.startswith("pandanode/core/_verify.") and n.endswith(".so")]
        assert len(built) == 1, names


def test_without_a_c_compiler_the_wheel_builds_and_checks_signatures_with_pynacl(
    wheelhouse: Path, tmp_path: Path
) -> None:
    # A copy of the sources: none of the extensions built here (core/*.so of the editable
    # install, build/ of the wheelhouse's build) may stand in for the one that cannot be built.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("core", "services", "client", "protos", "src"):
        shutil.copytree(
            ROOT / name,
            source / name,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.so", "node_modules"),
        )
    house = tmp_path / "house"
    # CC names no compiler: the extension is optional (setup.py), so the build only warns.
    env = {**_env(tmp_path), "CC": str(tmp_path / "no-such-cc")}
    built = _run(
        sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", source, "--no-deps",
        "--no-build-isolation", "--wheel-dir", house, env=env,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = house.glob("pandanode-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert [n for n in archive.namelist() if n.endswith(".so")] == []
    bin_dir = _fresh_venv(tmp_path / "venv", wheelhouse, str(wheel))
    program = (
        "from pandanode.core import KeyPair\n"
        "from pandanode.core.signatures import NATIVE, verify_batch\n"
        "key = KeyPair()\n"
        "sig, pk = key.sign(b'm'), key.public_key_bytes()\n"
        "print(NATIVE, verify_batch([(sig, b'm', pk), (sig, b'n', pk)]))"
    )
    probe = _run(bin_dir / "python", "-c", program, env=_env(tmp_path))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout == "False [True, False]\n"


async def test_the_wheel_without_the_node_extra_is_a_working_client(
    wheelhouse: Path, node: Node, tmp_path: Path
) -> None:
    (wheel,) = wheelhouse.glob("pandanode-*.whl")
    bin_dir = await asyncio.to_thread(_fresh_venv, tmp_path / "venv", wheelhouse, str(wheel))
    env = _env(tmp_path)
    pandanode = bin_dir / "pandanode"

    # No node dependency came along: the client install is the client.
    for module in ("rocksdict", "nats", "grpc_reflection"):
        probe = _run(bin_dir / "python", "-c", f"import {module}", env=env)
        assert probe.returncode != 0, f"{module} is installed without the node extra"
    assert not (bin_dir / "nats-server").exists()

    shown = _run(pandanode, "--version", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"pandanode {version('pandanode')}\n"

    # The client against a node of this test session (started from the dev venv).
    assert (await _arun(pandanode, "key", "new", env=env)).returncode == 0
    at_node = (pandanode, "--node", node.address, "--json")
    schema = await _arun(*at_node, "schema", "create", "note", "-f", "text:str", env=env)
    assert schema.returncode == 0, schema.stderr
    schema_id = json.loads(schema.stdout)["schema_id"]
    created = await _arun(
        *at_node, "document", "create", schema_id, "-f", "text=hello from a wheel", env=env
    )
    assert created.returncode == 0, created.stderr
    operation_id = json.loads(created.stdout)["operation_id"]
    listed = await _arun(*at_node, "documents", "list", schema_id, "--after", operation_id, env=env)
    assert listed.returncode == 0, listed.stderr
    assert [row["fields"]["text"] for row in json.loads(listed.stdout)] == ["hello from a wheel"]

    # The node commands say what to install, in one line.
    up = _run(pandanode, "up", "--data-dir", tmp_path / "data", env=env)
    assert up.returncode == 2
    assert up.stderr.count("\n") == 1 and "pip install 'pandanode[node]'" in up.stderr
    helped = _run(pandanode, "--help", env=env)
    assert helped.returncode == 0 and "pandanode[node]" in helped.stdout

    # The generated code and the packages carry their types.
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    for package in ("core", "client", "services", "ingest", "query", "discovery", "node"):
        assert (site / "pandanode" / package / "py.typed").is_file(), package
    assert (site / "pandanode" / "query" / "v1" / "query_pb2.pyi").is_file()
    licenses = list(site.glob("pandanode-*.dist-info/licenses/LICENSE"))
    assert licenses and "GNU AFFERO GENERAL PUBLIC LICENSE" in licenses[0].read_text()


async def test_the_wheel_with_the_node_extra_runs_pandanode_up(
    wheelhouse: Path, tmp_path: Path
) -> None:
    (wheel,) = wheelhouse.glob("pandanode-*.whl")
    bin_dir = await asyncio.to_thread(
        _fresh_venv, tmp_path / "venv", wheelhouse, f"pandanode[node] @ {wheel.as_uri()}"
    )
    env = _env(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [bin_dir / "pandanode", "up", "--data-dir", tmp_path / "data", "--listen", address,
         "--no-lan-discovery"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )  # fmt: skip
    try:

        async def serving() -> bool:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                raise AssertionError(f"pandanode up exited {process.returncode}: {output}")
            status = await asyncio.to_thread(
                _run, bin_dir / "pandanode", "--node", address, "--json", "--timeout", "2",
                "status", env=env,
            )  # fmt: skip
            return status.returncode == 0 and json.loads(status.stdout)["serving"] is True

        await eventually(serving, timeout=60, interval=0.5, what=f"pandanode up on {address}")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
