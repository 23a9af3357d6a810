"""deploy/compose.yaml passes ``docker compose config -q`` (the Compose v2 binary, offline) and
says what a deployment needs: NATS cluster, health checks, volumes, the entry point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pandanode.services.runtime.nats_users import PASSWORDS_FILE, write_credentials

from .tools import DEPLOY, Run, compose_binary, run, tool

PANDANODE_SERVICES = ("ingest", "query", "discovery", "replication", "gateway")
NATS_CLIENTS = ("ingest", "query", "discovery", "replication")  # the gateway uses no NATS


def compose(directory: Path, *args: str) -> Run:
    return run(compose_binary(), "--project-directory", directory, "-f",
               directory / "compose.yaml", *args)  # fmt: skip


def rendered(profile: str) -> dict[str, Any]:
    answer = compose(DEPLOY, "--profile", profile, "config", "--format", "json")
    assert answer.returncode == 0, answer.stderr
    config: dict[str, Any] = json.loads(answer.stdout)
    return config


@pytest.mark.parametrize("profile", ["all-in-one", "split"])
def test_compose_file_is_valid_in_each_profile(profile: str) -> None:
    answer = compose(DEPLOY, "--profile", profile, "config", "-q")

    assert answer.returncode == 0, answer.stderr


def test_compose_validation_fails_on_a_broken_copy(tmp_path: Path) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    text = (copy / "compose.yaml").read_text()
    node = "  node:\n    <<: *pandanode\n"
    assert node in text
    (copy / "compose.yaml").write_text(
        text.replace(node, node + "    restart_policy_typo: always\n", 1)
    )

    answer = compose(copy, "--profile", "split", "config", "-q")

    assert answer.returncode != 0
    assert "restart_policy_typo" in answer.stderr


def test_compose_validation_fails_when_a_service_depends_on_one_that_does_not_exist(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    text = (copy / "compose.yaml").read_text()
    (copy / "compose.yaml").write_text(
        text.replace("  nats-3:\n    condition", "  nats-9:\n    condition", 1)
    )

    answer = compose(copy, "--profile", "split", "config", "-q")

    assert answer.returncode != 0
    assert "nats-9" in answer.stderr


def test_all_in_one_profile_is_one_node_with_a_volume_a_health_check_and_both_ports() -> None:
    services = rendered("all-in-one")["services"]

    assert set(services) == {"node"}
    node = services["node"]
    assert node["command"] == ["up"]
    assert node["healthcheck"]["test"] == ["CMD", "pandanode", "health"]
    assert [v["target"] for v in node["volumes"]] == ["/var/lib/pandanode"]
    assert [p["target"] for p in node["ports"]] == [2020, 2021]  # gRPC, the HTTP gateway


def test_split_profile_runs_every_service_on_a_three_node_nats_cluster() -> None:
    config = rendered("split")
    services = config["services"]

    assert {"nats-1", "nats-2", "nats-3", *PANDANODE_SERVICES, "entry"} == set(services)
    for name in ("nats-1", "nats-2", "nats-3"):
        assert services[name]["environment"]["NATS_SERVER_NAME"] == name
        assert any(v["type"] == "volume" for v in services[name]["volumes"])
        assert "healthcheck" in services[name]
    for name in PANDANODE_SERVICES:
        service = services[name]
        assert service["healthcheck"]["test"] == ["CMD", "pandanode", "health"], name
        for nats in ("nats-1", "nats-2", "nats-3"):
            assert service["depends_on"][nats]["condition"] == "service_healthy", name
    for name in NATS_CLIENTS:
        url = services[name]["environment"]["PANDANODE_NATS_URL"]
        assert url == "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222"
        assert services[name]["environment"]["PANDANODE_STREAM_REPLICAS"] == "3"
    assert services["query"]["deploy"]["replicas"] == 2


def secret_path(target: str) -> str:
    """Where compose mounts a secret: its target, under /run/secrets/ unless absolute."""
    return target if target.startswith("/") else f"/run/secrets/{target}"


def test_split_profile_gives_each_nats_client_its_own_nats_user_from_a_secret_file() -> None:
    config = rendered("split")
    services = config["services"]

    for name in NATS_CLIENTS:
        environment = services[name]["environment"]
        path = environment["PANDANODE_NATS_CREDENTIALS_FILE"]
        mounted = {secret_path(s["target"]): s["source"] for s in services[name]["secrets"]}
        assert mounted[path] == f"nats-{name}", name
        assert config["secrets"][f"nats-{name}"]["file"].endswith(f"/{name}.credentials")
    assert "PANDANODE_NATS_URL" not in services["gateway"]["environment"]
    assert "secrets" not in services["gateway"]
    for nats in ("nats-1", "nats-2", "nats-3"):
        (secret,) = services[nats]["secrets"]
        assert (secret["source"], secret["target"]) == (
            "nats-passwords",
            "/etc/nats/nats-passwords.conf",
        )
        targets = {volume["target"] for volume in services[nats]["volumes"]}
        assert {"/etc/nats/nats.conf", "/etc/nats/users.conf"} <= targets


def test_split_profile_publishes_only_the_entry_point() -> None:
    services = rendered("split")["services"]

    published = {name for name, service in services.items() if service.get("ports")}

    assert published == {"entry"}
    assert sorted(p["target"] for p in services["entry"]["ports"]) == [2020, 2021]
    for name in ("ingest", "query", "discovery", "replication", "gateway"):
        assert services["entry"]["depends_on"][name]["condition"] == "service_healthy"


def nats_config_dir(tmp_path: Path) -> Path:
    """deploy/nats as the NATS containers see /etc/nats: with the passwords secret beside it."""
    directory = tmp_path / "etc-nats"
    shutil.copytree(DEPLOY / "nats", directory)
    write_credentials(directory)
    return directory


def test_nats_config_of_the_split_profile_parses_and_syncs_every_write(tmp_path: Path) -> None:
    conf = nats_config_dir(tmp_path) / "nats.conf"

    answer = run("env", "NATS_SERVER_NAME=nats-1", tool("nats-server"), "--config", conf, "-t")

    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "sync_interval: always" in conf.read_text()


def test_nats_config_check_fails_on_a_broken_copy(tmp_path: Path) -> None:
    broken = nats_config_dir(tmp_path) / "nats.conf"
    broken.write_text(broken.read_text().replace("jetstream {", "jetstream {{", 1))

    answer = run("env", "NATS_SERVER_NAME=nats-1", tool("nats-server"), "--config", broken, "-t")

    assert answer.returncode != 0


def test_nats_config_check_fails_without_the_passwords_secret(tmp_path: Path) -> None:
    directory = nats_config_dir(tmp_path)
    (directory / PASSWORDS_FILE).unlink()

    answer = run(
        "env", "NATS_SERVER_NAME=nats-1", tool("nats-server"), "--config",
        directory / "nats.conf", "-t",
    )  # fmt: skip

    assert answer.returncode != 0
    assert PASSWORDS_FILE in answer.stdout + answer.stderr
