"""The deployment's NATS users: a user per service with only its subjects, passwords only in
mounted secret files (never in a URL), and the rendered Kubernetes NATS config, run by a real
nats-server, lets each service in and refuses what its service does not need."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from pandanode.services.runtime.bus import connect_bus
from pandanode.services.runtime.events import OPERATIONS_INGESTED
from pandanode.services.runtime.nats_server import free_port
from pandanode.services.runtime.nats_users import (
    PASSWORDS_FILE,
    SERVICE_USERS,
    credentials_file_name,
    inbox_prefix,
    users_conf,
)
from tests.services.support import eventually

from .test_compose import rendered
from .test_k8s import OVERLAYS, objects
from .tools import DEPLOY, tool

# user:password@ in any URL (nats://, http://, …); a compose or Kubernetes variable in the
# password counts too.
PASSWORD_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/@:\"']+:[^\s/@\"']+@", re.IGNORECASE)


def test_the_committed_users_conf_files_are_generated_from_the_users_table() -> None:
    for path in (DEPLOY / "nats" / "users.conf", DEPLOY / "k8s" / "base" / "nats-users.conf"):
        assert path.read_text() == users_conf(), (
            f"{path} is stale: `pandanode config nats-users-conf > {path}`"
        )


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_the_password_pattern_finds_a_password_in_a_url() -> None:
    assert PASSWORD_IN_URL.search("nats://pandanode:secret@nats-1:4222")
    assert PASSWORD_IN_URL.search("nats://$(NATS_USER):$(NATS_PASSWORD)@nats:4222")
    assert not PASSWORD_IN_URL.search("nats://nats-1:4222,nats://nats-2:4222")


def test_no_manifest_or_file_of_deploy_has_a_password_in_a_url() -> None:
    found = []
    for profile in ("all-in-one", "split"):
        found += [(f"compose {profile}", s) for s in strings(rendered(profile))]
    for overlay in OVERLAYS:
        found += [(f"k8s {overlay}", s) for s in strings(list(objects(overlay).values()))]
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix not in (".lock",):
            found += [(str(path), line) for line in path.read_text(errors="replace").splitlines()]
    offending = [(where, text[:120]) for where, text in found if PASSWORD_IN_URL.search(text)]
    assert offending == []


@pytest.fixture
def dev_nats(tmp_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """The dev overlay's NATS server config and Secret, run by nats-server; (URL, the Secret)."""
    objs = objects("dev")
    config = next(o for (k, n), o in objs.items() if n.startswith("pandanode-nats-config"))
    secret = next(
        o for (k, n), o in objs.items() if k == "Secret" and n.startswith("pandanode-nats")
    )
    files = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    etc = tmp_path / "etc-nats"
    etc.mkdir()
    port = free_port()
    conf = config["data"]["nats.conf"]
    conf = conf.replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{port}")
    conf = conf.replace("http: 0.0.0.0:8222", "http: 127.0.0.1:0")
    conf = conf.replace("/var/lib/pandanode/jetstream", str(tmp_path / "jetstream"))
    assert f"127.0.0.1:{port}" in conf and str(tmp_path) in conf
    (etc / "nats.conf").write_text(conf)
    (etc / "users.conf").write_text(config["data"]["users.conf"])
    (etc / PASSWORDS_FILE).write_bytes(files[PASSWORDS_FILE])
    process = subprocess.Popen(
        [tool("nats-server"), "--config", etc / "nats.conf"],
        env={"NATS_SERVER_NAME": "nats-0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"nats://127.0.0.1:{port}", files
    finally:
        process.kill()
        process.wait()


def user_of(files: dict[str, bytes], user: str) -> tuple[str, str]:
    name, _, password = files[credentials_file_name(user)].decode().strip().partition(":")
    return name, password


async def test_the_dev_overlay_s_nats_lets_each_service_in_and_refuses_a_forged_event(
    dev_nats: tuple[str, dict[str, bytes]],
) -> None:
    url, files = dev_nats
    user, password = user_of(files, "ingest")
    ingest = await connect_bus(url, user=user, password=password)  # creates the stream
    try:
        for service in SERVICE_USERS:
            user, password = user_of(files, service)
            assert user == service
            other = await connect_bus(url, user=user, password=password, manage_stream=False)
            await other.close()
        errors: list[str] = []

        async def on_error(err: Exception) -> None:
            errors.append(str(err).lower())

        user, password = user_of(files, "query")
        query = await nats.connect(
            url, user=user, password=password, inbox_prefix=inbox_prefix(user), error_cb=on_error
        )
        await query.publish(OPERATIONS_INGESTED.subject_filter, b"forged")
        await query.flush()

        async def refused() -> bool:
            return any("permissions violation" in error for error in errors)

        await eventually(refused, timeout=5, what="the forged event refused")
        await query.close()
        assert await ingest.last_sequence() == 0
    finally:
        await ingest.close()
