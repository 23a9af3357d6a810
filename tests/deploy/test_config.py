"""deploy/config.toml lists every setting and stays in sync with Settings; ``pandanode config
show`` prints the effective settings after flags, environment and file."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from pandanode.services.runtime.config_file import describe_settings, sample_toml
from pandanode.services.runtime.settings import Settings

from .tools import DEPLOY

SAMPLE = DEPLOY / "config.toml"


def pandanode(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PANDANODE_")}
    return subprocess.run(
        [sys.executable, "-m", "pandanode.services.cli", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
        check=False,
    )


def test_committed_sample_is_what_config_sample_prints() -> None:
    printed = pandanode("config", "sample")

    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == sample_toml()
    assert SAMPLE.read_text() == printed.stdout, (
        "deploy/config.toml is out of date: run `make config-sample`"
    )


def test_sample_lists_every_setting_with_a_description_and_its_environment_variable() -> None:
    text = SAMPLE.read_text()
    descriptions = describe_settings()

    for field in dataclasses.fields(Settings):
        assert re.search(rf"^# {field.name} = ", text, flags=re.MULTILINE), field.name
        assert f"# Environment: PANDANODE_{field.name.upper()}\n" in text
        assert descriptions.get(field.name), f"{field.name} has no description in Settings"


def test_sample_with_every_line_uncommented_loads_as_the_defaults(tmp_path: Path) -> None:
    names = {f.name for f in dataclasses.fields(Settings)}
    lines = [
        line[2:]
        for line in SAMPLE.read_text().splitlines()
        if line.startswith("# ") and line[2:].split(" = ", 1)[0] in names
    ]
    config = tmp_path / "config.toml"
    config.write_text("\n".join(lines) + "\n")

    assert set(tomllib.loads(config.read_text())) == names
    assert Settings.load(env={}, config_file=config) == Settings()


def test_config_show_applies_flags_over_environment_over_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('listen = "127.0.0.1:3001"\nread_log_page = 7\nquery_batch_size = 9\n')

    shown = pandanode(
        "config", "show", "--config", str(config), "--listen", "127.0.0.1:3003",
        env={"PANDANODE_LISTEN": "127.0.0.1:3002", "PANDANODE_READ_LOG_PAGE": "8"},
    )  # fmt: skip

    assert shown.returncode == 0, shown.stderr
    effective = tomllib.loads(shown.stdout)
    assert set(effective) == {f.name for f in dataclasses.fields(Settings)}
    assert effective["listen"] == "127.0.0.1:3003"  # flag beats environment and file
    assert effective["read_log_page"] == 8  # environment beats file
    assert effective["query_batch_size"] == 9  # file beats default
    assert effective["max_page_size"] == Settings().max_page_size
    assert effective["lan_discovery"] is True  # `up` and `serve` turn LAN discovery on


def test_config_show_json_prints_the_same_settings() -> None:
    shown = pandanode("config", "show", "--json", env={"PANDANODE_PEER_TTL": "60"})

    assert shown.returncode == 0, shown.stderr
    effective = json.loads(shown.stdout)
    assert effective["peer_ttl"] == 60.0
    assert effective["data_dir"] == "data"
    assert len(effective) == len(dataclasses.fields(Settings))


def test_config_show_refuses_a_bad_setting_in_one_line() -> None:
    shown = pandanode("config", "show", env={"PANDANODE_LOG_LEVEL": "LOUD"})

    assert shown.returncode == 2
    assert shown.stdout == ""
    assert shown.stderr.count("\n") == 1 and "log_level" in shown.stderr


def test_the_schema_allow_list_is_a_flag_of_up_serve_and_config_show() -> None:
    venue = "venue_0020" + "ab" * 32
    shown = pandanode("config", "show", "--json", "--supported-schema-ids", f"{venue},blob_v1")

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["supported_schema_ids"] == f"{venue},blob_v1"
    for command in (("up",), ("serve", "ingest")):
        usage = pandanode(*command, "--help")
        assert "--supported-schema-ids" in usage.stdout
    refused = pandanode("config", "show", "--supported-schema-ids", "not a schema")
    assert refused.returncode == 2
    assert "supported_schema_ids" in refused.stderr
