"""Discovery's small parts: node key file, LAN datagrams, event ids, settings."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pandanode.core import KeyPair
from pandanode.services.discovery.identity import NodeKeyError, load_or_create_node_key
from pandanode.services.discovery.lan import (
    MAX_DATAGRAM_BYTES,
    AnnouncementError,
    decode_announcement,
    encode_announcement,
    lan_interface_for,
)
from pandanode.services.runtime.events import (
    OPERATIONS_INGESTED,
    PEER_DISCOVERED,
    PEER_LOST,
    peer_event_message_id,
    peer_event_subject,
)
from pandanode.services.runtime.settings import Settings, SettingsError

NODE = "ab" * 32


# -- node key --------------------------------------------------------------------------------


def test_the_node_key_is_made_once_owner_only_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "data" / "node.key"
    made = load_or_create_node_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == made.private_key() and len(path.read_text()) == 64
    assert load_or_create_node_key(path).public_key() == made.public_key()


def test_a_node_key_written_by_hand_or_by_aquadoggo_is_used(tmp_path: Path) -> None:
    key_pair = KeyPair()
    path = tmp_path / "node.key"
    path.write_text(key_pair.private_key() + "\n")
    with pytest.warns(UserWarning, match="accessible by others"):  # written with mode 0644
        loaded = load_or_create_node_key(path)
    assert loaded.public_key() == key_pair.public_key()


def test_a_node_key_file_without_a_key_is_a_clear_error_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_text("not a key")
    path.chmod(0o600)
    with pytest.raises(NodeKeyError, match="does not hold a node key"):
        load_or_create_node_key(path)
    assert path.read_text() == "not a key"


def test_an_unreadable_node_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.mkdir()  # unreadable as a file, also for root
    with pytest.raises(NodeKeyError, match="cannot read"):
        load_or_create_node_key(path)


# -- LAN datagrams ---------------------------------------------------------------------------


def test_an_announcement_round_trips() -> None:
    datagram = encode_announcement(NODE, "192.168.1.7:2020")
    assert decode_announcement(datagram, "192.168.1.7") == (NODE, "192.168.1.7:2020")


def test_an_announced_unspecified_host_is_the_datagram_source() -> None:
    for host in ("0.0.0.0", "[::]"):
        datagram = encode_announcement(NODE, f"{host}:2020")
        assert decode_announcement(datagram, "192.168.1.9") == (NODE, "192.168.1.9:2020")


@pytest.mark.parametrize(
    ("datagram", "problem"),
    [
        (b"\xff\xff\xff", "not a LanAnnouncement"),
        (b"x" * (MAX_DATAGRAM_BYTES + 1), "more than"),
        (b"", "protocol"),
        (encode_announcement(NODE, "h:1").replace(b"/1", b"/9"), "protocol"),
        (encode_announcement("AB" * 32, "h:1"), "node id"),
        (encode_announcement(NODE[:-2], "h:1"), "node id"),
        (encode_announcement(NODE, "no-port"), "host:port"),
        (encode_announcement(NODE, "h:99999"), "host:port"),
        (encode_announcement(NODE, "h:"), "host:port"),
    ],
)
def test_malformed_datagrams_are_rejected_with_a_reason(datagram: bytes, problem: str) -> None:
    with pytest.raises(AnnouncementError, match=problem):
        decode_announcement(datagram, "10.0.0.1")


def test_a_node_on_loopback_announces_on_loopback_only() -> None:
    assert lan_interface_for("127.0.0.1:2020") == "127.0.0.1"
    assert lan_interface_for("localhost:2020") == "127.0.0.1"
    assert lan_interface_for("[::1]:2020") == "127.0.0.1"
    assert lan_interface_for("0.0.0.0:2020") == "0.0.0.0"
    assert lan_interface_for("panda.local:2020") == "0.0.0.0"
    assert lan_interface_for("127.0.0.1:2020", "192.168.1.7") == "192.168.1.7"


# -- events ----------------------------------------------------------------------------------


def test_peer_events_live_under_their_own_subjects() -> None:
    assert peer_event_subject(PEER_DISCOVERED, NODE) == f"pandanode.v1.evt.peer.discovered.{NODE}"
    assert peer_event_subject(PEER_LOST, NODE) == f"pandanode.v1.evt.peer.lost.{NODE}"
    with pytest.raises(ValueError, match="not a peer event"):
        peer_event_subject(OPERATIONS_INGESTED, NODE)


def test_peer_event_ids_name_the_sighting_so_only_true_repeats_are_deduplicated() -> None:
    first = peer_event_message_id(PEER_DISCOVERED, NODE, 1_700_000_000.123456)
    assert first == f"{NODE}.discovered.1700000000123456"
    assert peer_event_message_id(PEER_DISCOVERED, NODE, 1_700_000_000.123456) == first
    assert peer_event_message_id(PEER_LOST, NODE, 1_700_000_000.123456) != first
    assert peer_event_message_id(PEER_DISCOVERED, NODE, 1_700_000_042.0) != first


# -- settings --------------------------------------------------------------------------------


def test_discovery_defaults_are_quiet_until_a_command_turns_lan_on() -> None:
    settings = Settings.load(env={})
    assert (settings.lan_discovery, settings.bootstrap_addresses) == (False, ())
    assert settings.peer_ttl > settings.discovery_probe_interval
    on = Settings.load(env={}, defaults={"lan_discovery": True})
    assert on.lan_discovery is True
    off = Settings.load(env={"PANDANODE_LAN_DISCOVERY": "off"}, defaults={"lan_discovery": True})
    assert off.lan_discovery is False, "the environment beats a command's default"


def test_bootstrap_peers_are_a_comma_separated_list_of_host_and_port() -> None:
    settings = Settings.load(
        env={"PANDANODE_BOOTSTRAP_PEERS": " a.example:2020, 10.0.0.2:2020 ,,a.example:2020"}
    )
    assert settings.bootstrap_addresses == ("a.example:2020", "10.0.0.2:2020")
    with pytest.raises(SettingsError, match="bootstrap_peers: 'a\\.example' is not host:port"):
        Settings(bootstrap_peers="a.example")
    with pytest.raises(SettingsError, match="advertise_address"):
        Settings(advertise_address="a.example:0")


def test_durations_are_seconds_and_the_ttl_must_outlast_the_intervals() -> None:
    settings = Settings.load(env={"PANDANODE_PEER_TTL": "12.5", "PANDANODE_LAN_DISCOVERY": "1"})
    assert settings.peer_ttl == 12.5 and settings.lan_discovery is True
    with pytest.raises(SettingsError, match="peer_ttl"):
        Settings(peer_ttl=5.0, lan_announce_interval=5.0)
    with pytest.raises(SettingsError, match="must be positive"):
        Settings(discovery_probe_timeout=0.0)


def test_lan_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="multicast"):
        Settings(lan_group="10.0.0.1")
    with pytest.raises(SettingsError, match="multicast"):
        Settings(lan_group="nope")
    with pytest.raises(SettingsError, match="UDP port"):
        Settings(lan_port=70000)
    with pytest.raises(SettingsError, match="lan_interface"):
        Settings(lan_interface="eth0")
    with pytest.raises(SettingsError, match="lan_discovery"):
        Settings.load(env={"PANDANODE_LAN_DISCOVERY": "perhaps"})
