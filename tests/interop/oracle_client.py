"""A typed Python client for ``oracle.js``: p2panda-js 0.8.1 as a long-running reference oracle.

One ``node oracle.js`` process serves a whole pytest session. Requests and responses are JSON
lines (the conventions are documented at the top of ``oracle.js``). Reading is synchronous with a
deadline: no sleeps, no background threads; if the oracle stops answering, the call fails with the
oracle's stderr in the message.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypedDict, cast

__all__ = [
    "INTEROP_DIR",
    "JsEntry",
    "JsLog",
    "JsOperation",
    "JsRandomOperation",
    "Oracle",
    "OracleError",
    "OracleProtocolError",
    "OracleUnavailableError",
    "Outcome",
    "TypedSpec",
]

INTEROP_DIR = Path(__file__).resolve().parent
ORACLE_JS = INTEROP_DIR / "oracle.js"
EXPECTED_VERSION = "0.8.1"
HOW_TO_INSTALL = (
    "The interop tests need Node.js (>= 18) and p2panda-js 0.8.1: run `make test` "
    "(it installs everything), or `npm install` in tests/interop."
)


class OracleUnavailableError(RuntimeError):
    """Node or p2panda-js is missing, or the oracle process died: the interop suite cannot run."""


class OracleProtocolError(RuntimeError):
    """The oracle itself could not handle a request (a bug in the harness, not a p2panda-js answer).

    Such errors start with ``oracle:`` on the wire and are never taken for a refusal by p2panda-js.
    """


class OracleError(Exception):
    """p2panda-js rejected a request (the message is p2panda-js' own error text)."""


class JsEntry(TypedDict):
    """``decodeEntry`` as JSON: numbers as decimal strings, absent links as None."""

    publicKey: str
    logId: str
    seqNum: str
    skiplink: str | None
    backlink: str | None
    payloadSize: str
    payloadHash: str
    signature: str


class JsOperation(TypedDict):
    """``decodeOperation`` as JSON; fields are ``[name, tagged plain value]`` in decode order."""

    version: int
    action: str
    schemaId: str
    previous: list[str] | None
    fields: list[list[Any]] | None


class TypedSpec(TypedDict):
    """Input of ``encodeOperation``; fields are ``[name, type, JSON value]``."""

    action: str
    schemaId: str
    previous: list[str] | str | None
    fields: list[list[Any]] | None


class JsRandomOperation(TypedDict):
    """A random operation made up by the oracle: its typed spec and p2panda-js' encoding."""

    spec: TypedSpec
    operation: str


class JsLog(TypedDict):
    """A log signed by p2panda-js (links computed by the oracle from p2panda-js' hashes)."""

    privateKey: str
    publicKey: str
    logId: str
    entries: list[str]
    hashes: list[str]
    operations: list[str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One answer: either ``ok`` (the result) or ``error`` (p2panda-js' message).

    ``trapped`` says that p2panda-js did not return an error but panicked (a WebAssembly trap,
    "unreachable"); the oracle then reloads p2panda-js. It is still a refusal of the input.
    """

    ok: Any = None
    error: str | None = None
    trapped: bool = False

    @property
    def accepted(self) -> bool:
        """Whether p2panda-js accepted the input."""
        return self.error is None

    def unwrap(self) -> Any:
        """Return the result, or raise :class:`OracleError` with p2panda-js' message."""
        if self.error is not None:
            raise OracleError(self.error)
        return self.ok


def _outcome(answer: Mapping[str, Any]) -> Outcome:
    if "error" not in answer:
        return Outcome(ok=answer["ok"])
    error = str(answer["error"])
    if error.startswith("oracle:"):
        raise OracleProtocolError(error)
    return Outcome(error=error, trapped=bool(answer.get("trapped")))


class Oracle:
    """A running ``node oracle.js``; see :meth:`start`."""

    def __init__(self, process: subprocess.Popen[bytes], stderr: IO[bytes], timeout: float) -> None:
        self._process = process
        self._stderr = stderr
        self._timeout = timeout
        self._buffer = b""
        self._next_id = 0
        self._selector = selectors.DefaultSelector()
        assert process.stdout is not None
        self._selector.register(process.stdout, selectors.EVENT_READ)
        ready = json.loads(self._read_line())
        if not ready.get("ready") or ready.get("version") != EXPECTED_VERSION:
            self.close()
            raise OracleUnavailableError(f"unexpected greeting from oracle.js: {ready!r}")
        self.version: str = ready["version"]
        self.node_version: str = ready["node"]

    @classmethod
    def start(cls, *, timeout: float = 60.0) -> Oracle:
        """Start ``node oracle.js``; fail loudly when Node or p2panda-js is missing.

        Raises:
            OracleUnavailableError: Node is not on PATH, p2panda-js is not installed, or the
                oracle did not greet within ``timeout`` seconds.
        """
        node = shutil.which("node")
        if node is None:
            raise OracleUnavailableError(f"`node` was not found on PATH. {HOW_TO_INSTALL}")
        package = INTEROP_DIR / "node_modules" / "p2panda-js" / "package.json"
        if not package.is_file():
            raise OracleUnavailableError(f"{package} does not exist. {HOW_TO_INSTALL}")
        installed = json.loads(package.read_text()).get("version")
        if installed != EXPECTED_VERSION:
            raise OracleUnavailableError(
                f"p2panda-js {installed} is installed, the interop tests need exactly "
                f"{EXPECTED_VERSION}. {HOW_TO_INSTALL}"
            )
        # Kept open for the life of the process (closed in close()), hence no `with`.
        stderr = tempfile.TemporaryFile()  # noqa: SIM115
        process = subprocess.Popen(
            [node, str(ORACLE_JS)],
            cwd=INTEROP_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            return cls(process, stderr, timeout)
        except BaseException:
            process.kill()
            process.wait()
            raise

    # -- transport ------------------------------------------------------------------------------

    def _stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def _dead(self, what: str) -> OracleUnavailableError:
        code = self._process.poll()
        status = f"exit code {code}" if code is not None else "still running"
        return OracleUnavailableError(
            f"oracle.js {what} ({status}); stderr: {self._stderr_text() or '(empty)'}. "
            f"{HOW_TO_INSTALL}"
        )

    def _read_line(self) -> str:
        deadline = time.monotonic() + self._timeout
        stdout = self._process.stdout
        assert stdout is not None
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                raise self._dead(f"did not answer within {self._timeout} s")
            chunk = os.read(stdout.fileno(), 1 << 20)
            if not chunk:
                raise self._dead("closed its output")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def request(self, op: str, args: Mapping[str, Any]) -> Outcome:
        """Send one request and return its outcome (no exception for p2panda-js errors)."""
        self._next_id += 1
        message = json.dumps({"id": self._next_id, "op": op, "args": dict(args)}) + "\n"
        stdin = self._process.stdin
        assert stdin is not None
        try:
            stdin.write(message.encode())
            stdin.flush()
        except BrokenPipeError:
            raise self._dead("is not running") from None
        response = json.loads(self._read_line())
        if response.get("id") != self._next_id:
            raise self._dead(f"answered out of order: {response!r}")
        return _outcome(response)

    def call(self, op: str, **args: Any) -> Any:
        """Run one op; raise :class:`OracleError` when p2panda-js rejects the input."""
        return self.request(op, args).unwrap()

    def batch(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Outcome]:
        """Run many ops in one round trip; one :class:`Outcome` per call, in order."""
        answers = self.call("batch", calls=[{"op": op, "args": dict(a)} for op, a in calls])
        return [_outcome(answer) for answer in answers]

    def close(self) -> None:
        """Stop the oracle (closing stdin ends it; it is killed if it lingers)."""
        self._selector.close()
        if self._process.stdin is not None and not self._process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()

    # -- typed wrappers -------------------------------------------------------------------------

    def key_pair(self, private_key: str | None = None) -> tuple[str, str]:
        """Return ``(private key, public key)``; a new random key pair without ``private_key``."""
        result = self.call("keyPair", privateKey=private_key)
        return str(result["privateKey"]), str(result["publicKey"])

    def sign(self, private_key: str, text: str) -> str:
        """``KeyPair.sign(text)``: the signature (hex) of the **UTF-8 bytes of** ``text``.

        p2panda-js documents the argument as "bytes encoded as a hexadecimal string" and checks
        that it is hex, but then signs the characters, not the bytes they stand for.
        """
        return str(self.call("sign", privateKey=private_key, data=text))

    def sign_and_encode_entry(
        self,
        private_key: str,
        operation: bytes,
        *,
        log_id: int = 0,
        seq_num: int = 1,
        backlink: str | None = None,
        skiplink: str | None = None,
    ) -> bytes:
        """``signAndEncodeEntry``; returns the entry bytes."""
        entry = self.call(
            "signAndEncodeEntry",
            privateKey=private_key,
            logId=str(log_id),
            seqNum=str(seq_num),
            backlink=backlink,
            skiplink=skiplink,
            operation=operation.hex(),
        )
        return bytes.fromhex(entry)

    def decode_entry(self, entry: bytes) -> JsEntry:
        """``decodeEntry``, as JSON."""
        return cast(JsEntry, self.call("decodeEntry", entry=entry.hex()))

    def encode_operation(self, spec: TypedSpec) -> bytes:
        """``encodeOperation`` with typed fields (``OperationFields.insert``)."""
        return bytes.fromhex(self.call("encodeOperation", **spec))

    def decode_operation(self, operation: bytes) -> JsOperation:
        """``decodeOperation``, as JSON."""
        return cast(JsOperation, self.call("decodeOperation", operation=operation.hex()))

    def generate_hash(self, data: bytes) -> str:
        """``generateHash``."""
        return str(self.call("generateHash", data=data.hex()))

    def verify_signature(self, public_key: str, text: str, signature: str) -> bool:
        """``verifySignature`` over the UTF-8 bytes of ``text`` (see :meth:`sign`).

        Raises:
            OracleError: for a malformed key or signature (p2panda-js throws rather than
                answering false).
        """
        result = self.call("verifySignature", publicKey=public_key, data=text, signature=signature)
        return bool(result)

    def random_operations(self, count: int) -> list[JsRandomOperation]:
        """Random operations made up by the oracle (fresh on every run)."""
        return cast(list[JsRandomOperation], self.call("randomOperations", count=count))

    def make_log(
        self,
        n: int = 0,
        *,
        private_key: str | None = None,
        log_id: int | None = None,
        operations: Sequence[bytes] | None = None,
    ) -> JsLog:
        """A log built and signed by p2panda-js; random key, log id and operations by default."""
        return cast(
            JsLog,
            self.call(
                "makeLog",
                n=n,
                privateKey=private_key,
                logId=None if log_id is None else str(log_id),
                operations=None if operations is None else [op.hex() for op in operations],
            ),
        )
