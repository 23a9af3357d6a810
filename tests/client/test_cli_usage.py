"""The ``pandanode`` command as a new user meets it, before any data: version, completion,
options in any place, one-line errors, the key file, and which modules a client command loads.

Every test runs the console script (or ``python -m pandanode.services.cli``) as a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pty
import select
import shlex
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from pandanode.client import load_key_pair
from pandanode.services.cli import build_parser
from pandanode.services.node import Node
from tests.client.conftest import PANDANODE, Cli

NODE_MODULES = ("rocksdict", "nats", "pandanode.services.node", "pandanode.services.runtime")


async def test_version_prints_the_installed_distributions_version(pandanode: Cli) -> None:
    shown = await pandanode("--version")
    assert shown.code == 0, shown.stderr
    assert shown.stdout == f"pandanode {version('pandanode')}\n"


def _complete(script: str, *words: str) -> list[str]:
    """Ask bash's completion function of ``script`` for the candidates after ``words``."""
    line = " ".join(["pandanode", *words])
    program = (
        f"{script}\n"
        f"COMP_WORDS=(pandanode {' '.join(words)}); COMP_CWORD={len(words)}\n"
        f'COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}\n'
        "_pandanode; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.split()


async def test_completion_bash_completes_commands_subcommands_options_and_choices(
    pandanode: Cli,
) -> None:
    script = await pandanode("completion", "bash")
    assert script.code == 0, script.stderr
    assert "complete -o default -F _pandanode pandanode" in script.stdout
    assert _complete(script.stdout, "doc") == ["document", "documents"]
    assert _complete(script.stdout, "document", "cr") == ["create"]
    assert set(_complete(script.stdout, "documents", "list", "venue_0020ab", "--")) >= {
        "--page-token",
        "--all",
        "--output",
        "--node",
        "--json",
    }
    assert _complete(script.stdout, "--node", "127.0.0.1:2020", "key", "n") == ["new"]
    assert _complete(script.stdout, "completion", "") == ["bash", "zsh", "fish"]
    assert "--nats" not in _complete(script.stdout, "serve", "ingest", "--na")  # hidden alias
    assert "--nats-url" in _complete(script.stdout, "serve", "ingest", "--na")


def _needs(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed (make setup installs it as root): not tested")
    return path


def _zsh_runs(script: Path, home: Path, typed: list[str]) -> list[str]:
    """Type each line into an interactive zsh that loaded ``script``; what ``pandanode`` got.

    zsh's completion system (``compinit``, the script's ``complete``) completes the words
    at each Tab; ``pandanode`` is a function printing its arguments, so pressing Enter shows
    the line as completed.
    """
    controller, terminal = pty.openpty()
    shell = subprocess.Popen(
        [_needs("zsh"), "-f", "-i"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={"HOME": str(home), "TERM": "xterm", "PATH": os.environ["PATH"]},
        start_new_session=True,
    )
    os.close(terminal)
    seen = b""

    def until(marker: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 30
        while marker not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"zsh never printed {marker!r}; it printed {seen[-2000:]!r}"
            ready, _, _ = select.select([controller], [], [], left)
            if ready:
                seen += os.read(controller, 65536)

    try:
        # The quotes keep the echo of what is typed from looking like the marker printed.
        setup = f'source {script}; pandanode() {{ print -r -- "AR""GS:$*;" }}; print RE\'\'ADY\n'
        os.write(controller, setup.encode())
        until(b"READY")
        answers = []
        for line in typed:
            seen = b""
            os.write(controller, line.encode() + b"\n")
            until(b";\r")
            answers.append(seen.split(b"ARGS:")[-1].split(b";")[0].decode())
        os.write(controller, b"exit\n")
        shell.wait(timeout=30)
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
        os.close(controller)
    return answers


async def test_completion_zsh_completes_subcommands_options_and_choices_in_an_interactive_zsh(
    pandanode: Cli, tmp_path: Path
) -> None:
    script = await pandanode("completion", "zsh")
    assert script.code == 0, script.stderr
    path = tmp_path / "pandanode.zsh"
    path.write_text(script.stdout)
    answers = _zsh_runs(
        path,
        tmp_path,
        [
            "pandanode document cr\t",
            "pandanode documents l\t",
            "pandanode documents list venue_0020ab --page-t\t",
            "pandanode --node 127.0.0.1:2020 key n\t",
            "pandanode completion f\t",
        ],
    )
    assert answers == [
        "document create",
        "documents list",
        "documents list venue_0020ab --page-token",
        "--node 127.0.0.1:2020 key new",
        "completion fish",
    ]


def _fish_completes(script: Path, home: Path, line: str) -> list[str]:
    """The candidates fish's own completion (``complete -C``) offers for ``line``."""
    done = subprocess.run(
        [_needs("fish"), "--no-config", "-c", f"source {script}; complete -C {shlex.quote(line)}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={"HOME": str(home), "PATH": os.environ["PATH"]},
    )
    assert not done.stderr, done.stderr
    return [candidate.split("\t")[0] for candidate in done.stdout.splitlines()]


async def test_completion_fish_completes_subcommands_options_and_choices(
    pandanode: Cli, tmp_path: Path
) -> None:
    script = await pandanode("completion", "fish")
    assert script.code == 0, script.stderr
    path = tmp_path / "pandanode.fish"
    path.write_text(script.stdout)
    assert _fish_completes(path, tmp_path, "pandanode doc") == ["document", "documents"]
    assert _fish_completes(path, tmp_path, "pandanode document cr") == ["create"]
    options = _fish_completes(path, tmp_path, "pandanode documents list venue_0020ab --")
    assert {"--page-token", "--all", "--output", "--node", "--json"} <= set(options)
    assert _fish_completes(path, tmp_path, "pandanode --node 127.0.0.1:2020 key n") == ["new"]
    assert sorted(_fish_completes(path, tmp_path, "pandanode completion ")) == [
        "bash",
        "fish",
        "zsh",
    ]


async def test_global_options_may_come_before_or_after_the_command(
    pandanode: Cli, node: Node, tmp_path: Path
) -> None:
    key_file = tmp_path / "elsewhere" / "key"
    before = await pandanode("--json", "--key-file", str(key_file), "key", "new")
    assert before.code == 0, before.stderr
    public_key = before.json()["public_key"]
    assert load_key_pair(key_file).public_key() == public_key
    after = await pandanode("key", "show", "--key-file", str(key_file), "--json")
    assert after.json() == {"public_key": public_key, "key_file": str(key_file)}

    # --node before the command wins over $PANDANODE_NODE; after the command over both.
    unreachable = "127.0.0.1:1"
    first, last, overridden = await asyncio.gather(
        pandanode("--node", unreachable, "--timeout", "2", "status"),
        pandanode("status", "--node", unreachable, "--timeout", "2"),
        pandanode("--node", unreachable, "status", "--node", node.address, "--json"),
    )
    assert first.code == 3 and unreachable in first.stderr
    assert last.code == 3 and unreachable in last.stderr
    assert overridden.code == 0, overridden.stderr
    assert overridden.json()["serving"] is True


async def test_key_new_on_an_existing_key_file_explains_overwrite(
    pandanode: Cli, cli_env: dict[str, str]
) -> None:
    assert (await pandanode("key", "new")).code == 0
    key_file = Path(cli_env["PANDANODE_KEY_FILE"])
    kept = key_file.read_bytes()
    again = await pandanode("key", "new")
    assert again.code == 2
    assert again.stderr.count("\n") == 1  # one line, no hint about Python
    assert str(key_file) in again.stderr and "--overwrite" in again.stderr
    assert "=True" not in again.stderr and "overwrite=" not in again.stderr
    assert key_file.read_bytes() == kept
    replaced = await pandanode("key", "new", "--overwrite", "--json")
    assert replaced.code == 0, replaced.stderr
    assert load_key_pair(key_file).public_key() == replaced.json()["public_key"]
    assert key_file.read_bytes() != kept


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["documents", "list", "venue_0020ab", "--limit", "many"],
            "--limit: 'many' is not a number",
        ),
        (["documents", "list", "venue_0020ab", "--limit", "0"], "must be more than 0"),
        (["documents", "list", "venue_0020ab", "-o", "tall"], "invalid choice: 'tall'"),
        (["status", "--timeout", "-1"], "--timeout: '-1': must be more than 0"),
        (["import", "-", "--batch-size", "x"], "--batch-size: 'x' is not a number"),
        (["watch", "venue_0020ab", "--duration", "soon"], "--duration: 'soon' is not a number"),
        (["document", "get", "x", "--resolve", "deep"], "--resolve: 'deep' is not a number"),
        (["documents", "lst"], "invalid choice: 'lst'"),
        (["key", "new", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--frobnicate", "status"], "unrecognized arguments: --frobnicate"),
        (["completion", "tcsh"], "invalid choice: 'tcsh'"),
        (["serve", "ingest"], "--nats-url URL is required"),
        (["up", "--listen", "nowhere"], "listen"),
        ([], "required: COMMAND"),
    ],
)
async def test_a_bad_flag_or_value_is_a_one_line_error_not_a_traceback(
    pandanode: Cli, args: list[str], says: str
) -> None:
    ran = await pandanode(*args)
    assert ran.code == 2, ran.stderr
    assert "Traceback" not in ran.stderr
    assert ran.stderr.count("\n") == 1, ran.stderr
    assert says in ran.stderr


async def test_nats_url_is_the_flag_of_every_node_command_and_nats_still_works(
    pandanode: Cli, tmp_path: Path
) -> None:
    for command in (["up"], ["serve", "ingest"], ["query", "rebuild"], ["check"]):
        shown = await pandanode(*command, "--help")
        assert shown.code == 0, shown.stderr
        assert "--nats-url URL" in shown.stdout
        assert "--nats " not in shown.stdout  # the old spelling is a hidden alias
    # Both spellings reach the command: nothing listens there, so the check cannot run.
    for flag in ("--nats-url", "--nats"):
        ran = await pandanode(
            "check", "--data-dir", str(tmp_path / "missing"), flag, "nats://127.0.0.1:1"
        )
        assert ran.code == 2, ran.stderr
        assert "unrecognized" not in ran.stderr and "Traceback" not in ran.stderr


def _modules_after(*args: str, env: dict[str, str]) -> set[str]:
    """The modules loaded once ``pandanode ARGS`` has run (in a fresh interpreter)."""
    program = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
        "from pandanode.services.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.splitlines()[-1]))


@pytest.mark.parametrize(
    "args",
    [
        ["key", "new", "--help"],
        ["key", "new"],
        ["--version"],
        ["status"],
        ["schema", "list", "--json"],
    ],
)
async def test_client_commands_do_not_import_the_nodes_modules(
    args: list[str], cli_env: dict[str, str], node: Node
) -> None:
    loaded = await asyncio.to_thread(_modules_after, *args, env=cli_env)
    assert "pandanode.services.cli" in loaded  # the console script's module did run
    heavy = {name for name in loaded if name.split(".")[0] in NODE_MODULES}
    heavy |= {name for name in loaded if name.startswith(NODE_MODULES)}
    assert not heavy


# What each client command must not load: what it does not need (start-up time, issue 16).
_NOT_NEEDED = {
    "version_without_event_loop_grpc_rich_or_package_metadata": (
        ["--version"],
        ("asyncio", "grpc", "google.protobuf", "rich", "nacl", "importlib.metadata", "cbor2"),
    ),
    "key_show_without_event_loop_grpc_or_rich": (
        ["key", "show"],
        ("asyncio", "grpc", "google.protobuf", "rich", "cbor2"),
    ),
    "status_without_signing_query_or_replication_protos": (
        ["status"],
        ("nacl", "cbor2", "pandanode.query.v1", "pandanode.replication.v1"),
    ),
    "schema_list_without_signing_log_reads_or_ingest_protos": (
        ["schema", "list", "--json"],
        ("nacl", "pandanode.client._logreads", "pandanode.ingest.v1", "pandanode.replication.v1"),
    ),
}


@pytest.mark.parametrize(("args", "not_needed"), _NOT_NEEDED.values(), ids=_NOT_NEEDED.keys())
async def test_a_client_command_loads_only_the_modules_it_needs(
    args: list[str], not_needed: tuple[str, ...], cli_env: dict[str, str], node: Node
) -> None:
    if args[0] == "key":
        await asyncio.to_thread(_modules_after, "key", "new", env=cli_env)
    loaded = await asyncio.to_thread(_modules_after, *args, env=cli_env)
    assert "pandanode.services.cli" in loaded  # the console script's module did run
    assert sorted(name for name in not_needed if _loads(loaded, name)) == []


def test_a_client_command_builds_the_parser_of_that_command_only() -> None:
    parser = build_parser(only="status")
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == {"status"}
    assert parser.parse_args(["--json", "status", "--node", "host:1"]).node == "host:1"


def _loads(loaded: set[str], module: str) -> bool:
    return any(name == module or name.startswith(f"{module}.") for name in loaded)


async def test_node_commands_are_listed_by_help(pandanode: Cli) -> None:
    shown = await pandanode("--help")
    assert shown.code == 0
    for command in ("up", "serve", "query", "check", "key", "documents", "completion"):
        assert f"    {command} " in shown.stdout
    assert Path(PANDANODE).exists()
