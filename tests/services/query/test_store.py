"""The query store's own rules: its format version."""

from __future__ import annotations

import struct
from pathlib import Path

from rocksdict import Options, Rdict

from pandanode.services.query.store import FORMAT_VERSION, QueryStore


def test_a_query_store_of_another_format_is_wiped_to_be_rematerialized(tmp_path: Path) -> None:
    path = tmp_path / "query"
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    old = Rdict(str(path), options=options)
    old[b"C"] = struct.pack(">Q", 41)  # a checkpoint written by a store without a version
    old[b"D" + b"\x00" * 34] = b"an old view"
    old.close()

    store = QueryStore(path)
    try:
        assert store.checkpoint() == 0
        assert list(store.dump()) == [(b"Z", struct.pack(">I", FORMAT_VERSION))]
    finally:
        store.close()


def test_a_query_store_of_this_format_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "query"
    store = QueryStore(path)
    batch = store.begin()
    batch.set_checkpoint(7)
    store.commit(batch)
    store.close()

    store = QueryStore(path)
    try:
        assert store.checkpoint() == 7
    finally:
        store.close()
