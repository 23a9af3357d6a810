"""deploy/k8s builds with kustomize and every object validates against the Kubernetes schemas
(``kubectl kustomize … | kubernetes-validate --strict -``); the overlays hold what the
deployment promises (probes, limits, replicas, HPA, PDBs, network policies, secrets)."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from pandanode.services.runtime.nats_users import users_conf

from .tools import DEPLOY, Run, run, tool

OVERLAYS = ("dev", "prod")
PANDANODE = ("ingest", "query", "discovery", "replication", "gateway")
NATS_CLIENTS = ("ingest", "query", "discovery", "replication")  # the gateway uses no NATS


def kustomize(k8s: Path, overlay: str) -> Run:
    return run(tool("kubectl"), "kustomize", k8s / "overlays" / overlay)


def validate(manifests: str) -> Run:
    return run(tool("kubernetes-validate"), "--strict", "--quiet", "-", stdin=manifests)


@functools.cache  # the committed files do not change during a run
def objects(overlay: str) -> dict[tuple[str, str], dict[str, Any]]:
    built = kustomize(DEPLOY / "k8s", overlay)
    assert built.returncode == 0, built.stderr
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(built.stdout) if o}


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


def workload(objs: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, Any]:
    return next(o for (kind, n), o in objs.items() if n == name and kind != "Service"
                and kind in ("Deployment", "StatefulSet"))  # fmt: skip


def copy_deploy(tmp_path: Path) -> Path:
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    return tmp_path / "deploy"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_validates_strictly(overlay: str) -> None:
    built = kustomize(DEPLOY / "k8s", overlay)
    assert built.returncode == 0, built.stderr

    answer = validate(built.stdout)

    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_validation_fails_on_a_broken_copy_with_an_unknown_field(tmp_path: Path) -> None:
    copy = copy_deploy(tmp_path)
    query = copy / "k8s/base/query.yaml"
    query.write_text(query.read_text().replace("          readinessProbe:\n",
                                               "          readinesProbe:\n", 1))  # fmt: skip
    built = kustomize(copy / "k8s", "prod")
    assert built.returncode == 0, built.stderr

    answer = validate(built.stdout)

    assert answer.returncode != 0
    assert "readinesProbe" in answer.stdout + answer.stderr


def test_kustomize_fails_on_a_broken_copy_missing_a_resource(tmp_path: Path) -> None:
    copy = copy_deploy(tmp_path)
    (copy / "k8s/base/gateway.yaml").unlink()

    answer = kustomize(copy / "k8s", "dev")

    assert answer.returncode != 0
    assert "gateway.yaml" in answer.stderr


def test_dev_overlay_runs_one_of_each() -> None:
    objs = objects("dev")

    for name in (*PANDANODE, "nats", "entry"):
        assert workload(objs, name)["spec"]["replicas"] == 1, name
    assert ("Secret", "pandanode-nats") in {(k, n.rsplit("-", 1)[0]) for k, n in objs}


def test_prod_overlay_runs_a_nats_cluster_ingest_with_a_volume_and_scaled_query() -> None:
    objs = objects("prod")

    nats = objs[("StatefulSet", "nats")]
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["volumeClaimTemplates"]
    nats_conf = next(o for (k, n), o in objs.items() if n.startswith("pandanode-nats-config"))
    conf = nats_conf["data"]["nats.conf"]
    assert "sync_interval: always" in conf
    assert all(f"nats-route://nats-{i}.nats:6222" in conf for i in range(3))
    settings = next(o for (k, n), o in objs.items() if n.startswith("pandanode-settings"))
    assert settings["data"]["PANDANODE_STREAM_REPLICAS"] == "3"
    ingest = objs[("StatefulSet", "ingest")]
    assert ingest["spec"]["replicas"] == 1
    assert ingest["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert objs[("Deployment", "query")]["spec"]["replicas"] >= 2
    hpa = objs[("HorizontalPodAutoscaler", "query")]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "query",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    for name in ("nats", "query", "entry"):
        assert ("PodDisruptionBudget", name) in objs
    assert objs[("Service", "entry")]["spec"]["type"] == "LoadBalancer"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_grpc_probes_limits_and_grpc_app_protocol(overlay: str) -> None:
    objs = objects(overlay)

    for name in PANDANODE:
        (container,) = containers(workload(objs, name))
        assert container["readinessProbe"]["grpc"]["port"] == 2020, name
        assert container["livenessProbe"]["grpc"]["port"] == 2020, name
        assert set(container["resources"]) == {"requests", "limits"}, name
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert workload(objs, name)["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    for (kind, _), obj in objs.items():
        if kind == "Service":
            for port in obj["spec"]["ports"]:
                if port["name"] == "grpc":
                    assert port["appProtocol"] == "grpc"


def mounted_file(obj: dict[str, Any], path: str) -> tuple[str, str]:
    """(secret name, key) of the Secret item a workload's one container sees at ``path``."""
    (container,) = containers(obj)
    volumes = {v["name"]: v for v in obj["spec"]["template"]["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        directory = mount["mountPath"]
        if not path.startswith(directory + "/"):
            continue
        volume = volumes[mount["name"]]
        sources = [volume] if "secret" in volume else volume.get("projected", {}).get("sources", [])
        for source in sources:
            if "secret" not in source:
                continue
            secret = source["secret"]
            for item in secret.get("items", []):
                if f"{directory}/{item['path']}" == path:
                    return secret.get("secretName") or secret["name"], item["key"]
    raise AssertionError(f"nothing of a Secret is mounted at {path}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_connects_to_nats_as_its_own_user_from_a_mounted_secret(overlay: str) -> None:
    objs = objects(overlay)

    for name in NATS_CLIENTS:
        obj = workload(objs, name)
        (container,) = containers(obj)
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["PANDANODE_NATS_URL"] == "nats://nats:4222", name
        secret, key = mounted_file(obj, env["PANDANODE_NATS_CREDENTIALS_FILE"])
        assert secret.startswith("pandanode-nats") and key == f"{name}.credentials", name
    (gateway,) = containers(workload(objs, "gateway"))
    assert not any(e["name"].startswith(("NATS", "PANDANODE_NATS")) for e in gateway.get("env", []))
    secret, key = mounted_file(workload(objs, "nats"), "/etc/nats/nats-passwords.conf")
    assert secret.startswith("pandanode-nats") and key == "nats-passwords.conf"
    nats_conf = next(o for (k, n), o in objs.items() if n.startswith("pandanode-nats-config"))
    assert 'include "users.conf"' in nats_conf["data"]["nats.conf"]
    assert nats_conf["data"]["users.conf"] == users_conf()


def test_prod_overlay_commits_no_secret() -> None:
    objs = objects("prod")

    assert [name for kind, name in objs if kind == "Secret"] == []


def test_network_policies_expose_only_the_entry_point_and_keep_nats_internal() -> None:
    objs = objects("prod")
    policies = [o for (kind, _), o in objs.items() if kind == "NetworkPolicy"]

    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert len(deny) == 1 and "ingress" not in deny[0]["spec"]
    open_to_all = [
        p for p in policies
        if any("from" not in rule for rule in p["spec"].get("ingress", []))
    ]  # fmt: skip
    assert [p["spec"]["podSelector"] for p in open_to_all] == [
        {"matchLabels": {"app.kubernetes.io/component": "entry"}}
    ]
    nats = [
        p for p in policies
        if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component")
        == "nats"
    ]  # fmt: skip
    (nats_policy,) = nats
    callers = set()
    for rule in nats_policy["spec"]["ingress"]:
        for source in rule["from"]:
            selector = source["podSelector"]
            for expression in selector.get("matchExpressions", []):
                callers.update(expression["values"])
            callers.update(selector.get("matchLabels", {}).values())
    assert callers == {*NATS_CLIENTS, "nats"}
