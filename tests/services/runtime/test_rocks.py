"""The shared RocksDB plumbing: synced writes are durable through the write-ahead log."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pandanode.services.runtime.rocks import RocksStore


class _Store(RocksStore):
    def put(self, key: bytes, value: bytes, *, sync: bool) -> None:
        self._write({key: value}, sync=sync)

    def get(self, key: bytes) -> bytes | None:
        return self._get(key)


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the files fdatasync'ed and the directories fsync'ed (by path), then does it."""
    calls: list[str] = []
    real_fdatasync, real_fsync = os.fdatasync, os.fsync

    def fdatasync(fd: int) -> None:
        calls.append("data:" + os.readlink(f"/proc/self/fd/{fd}"))
        real_fdatasync(fd)

    def fsync(fd: int) -> None:
        calls.append("dir:" + os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "fsync", fsync)
    return calls


_LISTDIR = os.listdir  # not counted by a test that counts the store's listings


def _wal_files(path: Path) -> list[str]:
    return sorted(str(path / name) for name in _LISTDIR(path) if name.endswith(".log"))


def test_a_synced_write_syncs_the_write_ahead_log_and_once_its_directory(
    tmp_path: Path, synced: list[str]
) -> None:
    path = tmp_path / "db"
    store = _Store(path)
    try:
        store.put(b"k1", b"v1", sync=True)
        [wal] = _wal_files(path)
        assert synced == [f"data:{wal}", f"dir:{path}"]
        synced.clear()
        store.put(b"k2", b"v2", sync=True)
        assert synced == [f"data:{wal}"]  # the directory entry is durable already
    finally:
        store.close()


def test_an_unsynced_write_syncs_nothing(tmp_path: Path, synced: list[str]) -> None:
    store = _Store(tmp_path / "db")
    try:
        store.put(b"k", b"v", sync=False)
        assert synced == []
        assert store.get(b"k") == b"v"
    finally:
        store.close()


def test_synced_writes_are_read_back_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store = _Store(path)
    for number in range(50):
        store.put(b"k%d" % number, b"v" * 1000, sync=True)
    store.close()
    reopened = _Store(path)
    try:
        assert all(reopened.get(b"k%d" % number) == b"v" * 1000 for number in range(50))
    finally:
        reopened.close()


def test_after_a_quiet_spell_only_the_newest_log_is_synced_until_a_new_one_appears(
    tmp_path: Path, synced: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db"
    store = _Store(path, write_buffer_bytes=256 * 1024)
    listings = 0

    def listdir(directory: Path) -> list[str]:
        nonlocal listings
        listings += 1
        return _LISTDIR(directory)

    monkeypatch.setattr(os, "listdir", listdir)
    try:
        quiet = os.stat(path).st_mtime_ns - 3_600 * 10**9
        os.utime(path, ns=(quiet, quiet))  # unchanged for an hour, as far as it shows
        store.put(b"k", b"v", sync=True)
        [first] = _wal_files(path)
        assert listings == 1
        synced.clear()
        store.put(b"k", b"v", sync=True)
        assert synced == [f"data:{first}"] and listings == 1, "the newest log, kept open"

        number = 0
        while _wal_files(path)[-1] == first:  # until RocksDB starts a new log
            number += 1
            assert number < 10_000, "no new write-ahead log"
            synced.clear()
            store.put(b"k%d" % number, b"v" * 4096, sync=True)
        new = _wal_files(path)[-1]
        assert f"data:{new}" in synced, "the write in the new log is synced"
        assert f"dir:{path}" in synced, "and the new log's directory entry"
    finally:
        store.close()
