"""The RocksDB plumbing every service store shares: raw-bytes database, overlay commits, scans.

A service store subclasses :class:`RocksStore` for opening, point reads, prefix scans and
writing a batch's overlay (buffered puts and deletes) atomically, synced or not.

A synced write is not RocksDB's ``sync`` write option: rocksdict holds the GIL for the whole
call, so every fsync of a group commit stalled the event loop (and every other thread) for
milliseconds. Instead the batch is written without sync — RocksDB hands the write-ahead log
record to the OS before ``write`` returns (``manual_wal_flush`` is off) — and
:class:`WalSync` then calls ``fdatasync`` on the write-ahead log files, which releases the GIL. The
guarantee is the same: the batch is on disk when ``_write`` returns.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from rocksdict import BlockBasedOptions, Options, Rdict, WriteBatch, WriteOptions

__all__ = ["DEFAULT_WRITE_BUFFER_BYTES", "RocksStore", "WalSync", "free_bytes"]

_WAL_SUFFIX = ".log"
# How long a directory must have been unchanged for its modification time to tell a change:
# far more than a kernel clock tick (1-10 ms).
_SETTLED_NS = 100_000_000
_WRITE_BUFFERS = 2

_MULTI_GET_FROM = 4
"""A MultiGet costs ~3 µs more than one lookup (~0.8 µs), and ~0.6 µs per key after that."""

DEFAULT_WRITE_BUFFER_BYTES = 32 * 1024 * 1024
"""Bytes of memtables a store holds at most (the ``store_write_buffer_bytes`` setting)."""


class WalSync:
    """Makes what was written to a RocksDB durable by syncing its write-ahead log files.

    RocksDB appends to one WAL file at a time and starts a new one when a memtable is switched;
    an older file is not written again, and is deleted once its memtable is flushed to a
    (synced) table file. So each call syncs the files from the newest one seen by the previous
    call on, and the directory when a new file appeared (its entry must be durable too).

    Listing the directory costs more than the sync's system call on a fast disk, so while the
    directory has not changed since it was listed (its modification time), only the newest file
    is synced, through a descriptor kept open. A modification time is as coarse as the kernel's
    clock tick: one equal to the listed one proves nothing if both fall in one tick, so that
    shortcut is only taken once the listed directory had been unchanged for :data:`_SETTLED_NS`.

    Args:
        path: The database directory (RocksDB keeps its WAL there by default).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._newest = -1
        self._fd: int | None = None  # the newest WAL file, open
        self._listed: int | None = None  # the directory's mtime (ns) when listed, if settled
        self._lock = threading.Lock()
        self.synced: list[str] = []
        """The WAL files the last :meth:`sync` synced (for tests and diagnostics)."""

    def sync(self) -> None:
        """``fdatasync`` every WAL file that may hold unsynced writes (GIL released)."""
        with self._lock:  # one writer syncs at a time; the lock only guards the kept descriptor
            if self._fd is not None and self._listed == os.stat(self._path).st_mtime_ns:
                os.fdatasync(self._fd)
                self.synced = self.synced[-1:]
                return
            self._sync_listed()

    def _sync_listed(self) -> None:
        # Read before listing: a file created after this read changes it.
        changed = os.stat(self._path).st_mtime_ns
        logs = sorted(
            (int(name[: -len(_WAL_SUFFIX)]), name)
            for name in os.listdir(self._path)
            if name.endswith(_WAL_SUFFIX) and name[: -len(_WAL_SUFFIX)].isdigit()
        )
        synced = []
        for number, name in logs:
            if number < self._newest:
                continue
            if number == self._newest and self._fd is not None:
                os.fdatasync(self._fd)
                synced.append(name)
                continue
            try:
                fd = os.open(self._path / name, os.O_RDONLY)
            except FileNotFoundError:  # flushed to a table file and deleted meanwhile
                continue
            try:
                os.fdatasync(fd)
            except BaseException:
                os.close(fd)
                raise
            if number == logs[-1][0]:
                self._keep(fd)
            else:
                os.close(fd)
            synced.append(name)
        if logs and logs[-1][0] > self._newest:
            directory = os.open(self._path, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._newest = logs[-1][0]
        self.synced = synced
        settled = time.time_ns() - changed > _SETTLED_NS
        self._listed = changed if settled and self._fd is not None else None

    def _keep(self, fd: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd

    def close(self) -> None:
        """Close the descriptor kept open (the next :meth:`sync` lists the directory again)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._listed = None


class RocksStore:
    """One RocksDB in raw-bytes mode, owned by one process (RocksDB locks it).

    Args:
        path: The directory of the database (created if missing).
    """

    bloom_filter_bits: int = 0
    """Bits per key of a bloom filter in each table file (0: none); a store whose hot path
    looks up keys that are mostly absent sets it, so such a miss skips the table files."""

    def __init__(self, path: Path, *, write_buffer_bytes: int = DEFAULT_WRITE_BUFFER_BYTES) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        # The memtables are the store's largest use of memory: bounded by bytes, in all (the
        # active one, and one being flushed to a table file).
        options.set_write_buffer_size(max(1, write_buffer_bytes // _WRITE_BUFFERS))
        options.set_max_write_buffer_number(_WRITE_BUFFERS)
        if self.bloom_filter_bits:
            table = BlockBasedOptions()
            table.set_bloom_filter(self.bloom_filter_bits, False)
            options.set_block_based_table_factory(table)
        self._db = Rdict(str(path), options=options)
        self._async = WriteOptions()
        self._wal = WalSync(path)
        self.path = path
        self.write_error: str | None = None
        """The first failed write (one line), or None. RocksDB refuses every later write once
        its write-ahead log failed (``Writer has previous error``, also after a full disk has
        space again): the store must be reopened, which its service does by restarting."""

    def _get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def _get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The values of ``keys`` (None where absent), in one RocksDB ``MultiGet``."""
        if len(keys) < _MULTI_GET_FROM:
            return [self._get(key) for key in keys]
        wanted: list[str | int | float | bytes | bool] = list(keys)
        values = self._db.get(wanted)
        assert isinstance(values, list)  # a list of keys gives a list of values
        return [None if value is None else bytes(value) for value in values]

    def close(self) -> None:
        """Flush and close the database.

        A store whose writes failed cannot flush; it is closed all the same (what was
        acknowledged is in its synced write-ahead log).
        """
        self._wal.close()
        if self.write_error is None:
            self._db.close()
            return
        with contextlib.suppress(Exception):  # the write error was reported when it happened
            self._db.close()

    def _write(self, overlay: Mapping[bytes, bytes | None], *, sync: bool) -> None:
        """Write buffered puts (and deletes, ``None``) atomically; synced: durable on return."""
        if not overlay:
            return
        batch = WriteBatch(raw_mode=True)
        for key, value in overlay.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        try:
            self._db.write(batch, write_opt=self._async)
        except Exception as err:
            self._failed(err)
            raise
        if sync:
            self.sync()

    def sync(self) -> None:
        """Make every write so far durable: sync the write-ahead log (GIL released meanwhile)."""
        try:
            self._wal.sync()
        except Exception as err:
            self._failed(err)
            raise

    def _failed(self, err: Exception) -> None:
        if self.write_error is None:
            self.write_error = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]

    def _scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Yield (key, value) of the keys with ``prefix``, from ``start`` on, in key order."""
        for key, value in self._db.items(from_key=start or prefix):
            assert isinstance(key, bytes) and isinstance(value, bytes)  # raw mode
            if not key.startswith(prefix):
                return
            yield key, value

    def stats(self) -> dict[str, int]:
        """A few numbers about the store (estimated keys, live data size)."""
        return {
            "estimated_keys": int(self._db.property_int_value("rocksdb.estimate-num-keys") or 0),
            "live_data_bytes": int(
                self._db.property_int_value("rocksdb.estimate-live-data-size") or 0
            ),
        }


def free_bytes(path: Path) -> int:
    """Bytes free for this process on the file system of ``path`` (0 if it cannot be read)."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return 0
    return stats.f_bavail * stats.f_frsize
