"""The client: encoding and signing with pandanode.core against p2panda-js 0.8.1 in Node.

Both sides build the same log (one document: a CREATE, then UPDATEs pointing at the operation
before) with the same key, so their entries are byte-identical (Ed25519 is deterministic); the
run fails if the last entry hashes differ. Three steps are timed on each side: encode+sign+hash
of the whole chain, encoding alone, signing (+ entry hash) alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

from pandanode.core import (
    KeyPair,
    encode_operation,
    generate_hash,
    is_skiplink_required,
    lipmaa,
    sign_and_encode_entry,
)

from ..context import INTEROP_DIR, Context
from ..procs import ROOT
from ..registry import Option, ScenarioResult, scenario
from ..workload import bench_schema, create_fields, update_fields

__all__: list[str] = []

JS_BENCH = ROOT / "bench" / "js" / "client_bench.js"
_PY = "pandanode.core (Python)"
_JS = "p2panda-js 0.8.1 (Node)"
_COLUMNS = ("encode+sign entries/s", "encode ops/s", "sign entries/s")


def _encode(schema_id: str, seq_num: int, previous: str | None) -> bytes:
    if seq_num == 1:
        return encode_operation(schema_id=schema_id, fields=create_fields(0))
    assert previous is not None
    return encode_operation(
        action="update",
        schema_id=schema_id,
        previous=[previous],
        fields=update_fields(0, seq_num),
    )


def _sign(key_pair: KeyPair, seq_num: int, operation: bytes, hashes: list[str]) -> str:
    entry = sign_and_encode_entry(
        operation,
        key_pair,
        log_id=0,
        seq_num=seq_num,
        backlink=hashes[seq_num - 2] if seq_num > 1 else None,
        skiplink=hashes[lipmaa(seq_num) - 1] if is_skiplink_required(seq_num) else None,
    )
    return generate_hash(entry)


def _full(key_pair: KeyPair, schema_id: str, count: int) -> tuple[list[str], list[bytes]]:
    hashes: list[str] = []
    operations: list[bytes] = []
    for seq_num in range(1, count + 1):
        operation = _encode(schema_id, seq_num, hashes[-1] if hashes else None)
        operations.append(operation)
        hashes.append(_sign(key_pair, seq_num, operation, hashes))
    return hashes, operations


def python_run(private_key: str, schema_id: str, count: int, warmup: int) -> dict[str, float | str]:
    """Time the three steps with pandanode.core; seconds each, and the last entry hash."""
    key_pair = KeyPair(private_key)
    _full(key_pair, schema_id, min(warmup, count))
    start = time.perf_counter()
    hashes, operations = _full(key_pair, schema_id, count)
    full = time.perf_counter() - start
    start = time.perf_counter()
    for seq_num in range(1, count + 1):
        _encode(schema_id, seq_num, hashes[seq_num - 2] if seq_num > 1 else None)
    encode = time.perf_counter() - start
    start = time.perf_counter()
    for seq_num in range(1, count + 1):
        _sign(key_pair, seq_num, operations[seq_num - 1], hashes)
    sign = time.perf_counter() - start
    return {"fullS": full, "encodeS": encode, "signS": sign, "lastHash": hashes[-1]}


async def js_run(private_key: str, schema_id: str, count: int, warmup: int) -> dict[str, object]:
    """Run ``bench/js/client_bench.js`` (p2panda-js in Node); its JSON answer.

    Raises:
        RuntimeError: Node failed.
    """
    args = {
        "interopDir": str(INTEROP_DIR),
        "privateKey": private_key,
        "schemaId": schema_id,
        "count": count,
        "warmup": warmup,
    }
    process = await asyncio.create_subprocess_exec(
        "node",
        str(JS_BENCH),
        json.dumps(args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"client_bench.js failed ({process.returncode}): {stderr.decode()}")
    answer: dict[str, object] = json.loads(stdout)
    return answer


@scenario(
    "client.sign_encode",
    title="Client: encode + sign one log, pandanode.core vs p2panda-js 0.8.1 (same bytes)",
    requires=("p2panda-js",),
    options=(Option("--client-entries", int, 10_000, "entries encoded and signed", smoke=200),),
)
async def sign_encode(ctx: Context, out: ScenarioResult) -> None:
    """Encode and sign the same log in Python and in Node; compare the rates."""
    count = ctx.args.client_entries
    warmup = min(500, count)
    private_key = hashlib.sha256(b"pandanode bench: client author").hexdigest()
    schema_id = bench_schema().schema_id
    py = await asyncio.to_thread(python_run, private_key, schema_id, count, warmup)
    js = await js_run(private_key, schema_id, count, warmup)
    if js["lastHash"] != py["lastHash"]:
        raise RuntimeError(
            f"p2panda-js signed other bytes: last hash {js['lastHash']} != {py['lastHash']}"
        )
    for column, key in zip(_COLUMNS, ("fullS", "encodeS", "signS"), strict=True):
        js_seconds = js[key]
        py_seconds = py[key]
        assert isinstance(js_seconds, float | int) and isinstance(py_seconds, float)
        out.rate(_JS, count, float(js_seconds), column=column)
        out.rate(_PY, count, py_seconds, column=column, baseline=f"{out.name}/{_JS}/{column}")
    out.notes["node"] = js["node"]
    out.notes["p2panda_js"] = js["version"]
