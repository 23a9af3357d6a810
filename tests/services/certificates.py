"""Certificates for mutual TLS tests, made with the ``openssl`` CLI (3.0 or later): an internal
CA, a service certificate it signed (for localhost and 127.0.0.1, server and client use), and
one signed by a CA nobody trusts."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificates", "make_certificates"]


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@dataclass(frozen=True)
class Certificates:
    """The internal CA, a service certificate it signed, and one of a CA nobody trusts."""

    ca: Path
    cert: Path
    key: Path
    stranger_cert: Path
    stranger_key: Path

    def settings(self) -> dict[str, str]:
        return {
            "internal_tls_cert_file": str(self.cert),
            "internal_tls_key_file": str(self.key),
            "internal_tls_ca_file": str(self.ca),
        }


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "1", "-subj", f"/CN={name}", "-keyout", key, "-out", cert,
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _signed(directory: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, server and client, signed by ``ca``."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "1", "-subj", f"/CN={name}", "-keyout", key, "-out", cert,
        "-CA", ca[0], "-CAkey", ca[1],
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "extendedKeyUsage=serverAuth,clientAuth",
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    """Make the internal CA, a service certificate and a stranger's in ``directory``."""
    ca = _ca(directory, "internal-ca")
    cert, key = _signed(directory, "service", ca)
    stranger_cert, stranger_key = _signed(directory, "stranger", _ca(directory, "other-ca"))
    return Certificates(ca[0], cert, key, stranger_cert, stranger_key)
