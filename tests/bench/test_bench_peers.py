"""The peer baseline's set-up: its own venv, installed once, never by a smoke run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.context import Context
from bench.scenarios import peers


def _context(tmp_path: Path, *, smoke: bool) -> Context:
    return Context(argparse.Namespace(smoke=smoke), tmp_path / "work", {})


async def test_smoke_run_skips_the_nostr_relay_without_installing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv-bench" / "nostr-relay"
    monkeypatch.setattr(peers, "NOSTR_VENV", venv)
    reason = await _context(tmp_path, smoke=True).missing("nostr-relay")
    assert reason is not None
    assert str(venv) in reason and "--smoke does not install it" in reason
    assert not venv.parent.exists()


async def test_an_installed_venv_is_used_without_asking_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "nostr-relay"
    venv.mkdir()
    (venv / ".installed").write_text(peers.NOSTR_RELAY_VERSION + "\n")
    monkeypatch.setattr(peers, "NOSTR_VENV", venv)
    assert await _context(tmp_path, smoke=False).missing("nostr-relay") is None
    assert await peers.install(venv) is None
    assert sorted(p.name for p in venv.iterdir()) == [".installed"]


@pytest.mark.parametrize("marker", [None, "1.13\n"])
async def test_a_venv_without_a_finished_install_of_this_version_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marker: str | None
) -> None:
    venv = tmp_path / "nostr-relay"
    (venv / "bin").mkdir(parents=True)
    if marker is not None:
        (venv / ".installed").write_text(marker)
    monkeypatch.setattr(peers, "NOSTR_VENV", venv)
    reason = await _context(tmp_path, smoke=True).missing("nostr-relay")
    assert reason is not None and "is not installed" in reason


def test_the_relay_serves_loopback_from_the_scratch_directory_and_reaches_out_nowhere(
    tmp_path: Path,
) -> None:
    config = json.loads(peers._config(tmp_path, 45678))
    assert config["gunicorn"]["bind"] == "127.0.0.1:45678"
    assert config["gunicorn"]["workers"] == 1
    assert config["storage"]["sqlalchemy.url"] == (
        f"sqlite+aiosqlite:///{tmp_path / 'nostr.sqlite3'}"
    )
    assert config["verification"]["nip05_verification"] == "disabled"
    assert "nostr_relay.validators.is_signed" in config["storage"]["validators"]
    assert not {"foaf", "dynamic_lists", "run_notifier", "service_privatekey"} & set(config)
