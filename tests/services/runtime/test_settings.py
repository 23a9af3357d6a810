from pathlib import Path

import pytest

from pandanode.services.runtime.settings import Settings, SettingsError


def test_defaults_are_a_local_data_dir_and_the_p2panda_port() -> None:
    settings = Settings.load(env={})
    assert settings.data_dir == Path("data")
    assert settings.listen == "127.0.0.1:2020"
    assert settings.nats_url == ""


def test_flags_beat_environment_which_beats_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "pandanode.toml"
    config.write_text('listen = "127.0.0.1:1111"\ndata_dir = "from-file"\nmax_batch_items = 10\n')
    env = {"PANDANODE_LISTEN": "127.0.0.1:2222", "PANDANODE_MAX_BATCH_ITEMS": "20"}
    settings = Settings.load({"listen": "127.0.0.1:3333"}, env=env, config_file=config)
    assert settings.listen == "127.0.0.1:3333"
    assert settings.max_batch_items == 20
    assert settings.data_dir == Path("from-file")


def test_flags_given_as_none_do_not_override(tmp_path: Path) -> None:
    settings = Settings.load({"listen": None}, env={"PANDANODE_LISTEN": "0.0.0.0:9"})
    assert settings.listen == "0.0.0.0:9"


def test_an_unknown_key_in_the_config_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "pandanode.toml"
    config.write_text("lisen = 'x'\n")
    with pytest.raises(SettingsError, match="unknown setting 'lisen'"):
        Settings.load(env={}, config_file=config)


def test_a_malformed_number_in_the_environment_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match="max_batch_items"):
        Settings.load(env={"PANDANODE_MAX_BATCH_ITEMS": "lots"})


def test_limits_must_be_positive() -> None:
    with pytest.raises(SettingsError, match="must be positive"):
        Settings(max_operation_bytes=0)


def test_listen_must_be_host_and_port() -> None:
    with pytest.raises(SettingsError, match="host:port"):
        Settings(listen="2020")


def test_an_unreadable_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config file"):
        Settings.load(env={}, config_file=tmp_path / "missing.toml")


def test_the_event_stream_is_kept_once_unless_more_replicas_are_asked_for() -> None:
    assert Settings().stream_replicas == 1
    assert Settings.load(env={"PANDANODE_STREAM_REPLICAS": "3"}).stream_replicas == 3
    with pytest.raises(SettingsError, match="stream_replicas must be 1 to 5"):
        Settings(stream_replicas=6)
    with pytest.raises(SettingsError, match="stream_replicas must be positive"):
        Settings(stream_replicas=0)
