"""The RocksDB plumbing every service store shares: raw-bytes database, overlay commits, scans.

A service store subclasses :class:`RocksStore` for opening, point reads, prefix scans and
writing a batch's overlay (buffered puts and deletes) atomically, synced or not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

__all__ = ["RocksStore"]


class RocksStore:
    """One RocksDB in raw-bytes mode, owned by one process (RocksDB locks it).

    Args:
        path: The directory of the database (created if missing).
    """

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self._db = Rdict(str(path), options=options)
        self._sync = WriteOptions()
        self._sync.sync = True
        self._async = WriteOptions()

    def _get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def close(self) -> None:
        """Flush and close the database."""
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
        self._db.write(batch, write_opt=self._sync if sync else self._async)

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
