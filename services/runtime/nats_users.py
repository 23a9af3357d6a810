"""Per-service NATS users: who may publish and subscribe to what, and their credentials.

Each service that talks to NATS connects as a user of its own, allowed only the subjects its
work needs: ingest publishes ``operations.ingested`` and is the one user that may create and
update the ``PANDANODE`` stream; discovery publishes peer events; query and replication read
the stream through consumers of their own. Every user receives replies only on an inbox of its
own (``_INBOX.<user>.…``, :func:`inbox_prefix`), so no user reads another's replies. ``admin``
may do anything, for operators (``pandanode check``, ``nats`` CLI), never for a service.

The same table renders the ``authorization`` block of the deployment's NATS servers
(``deploy/nats/users.conf``, ``deploy/k8s/base/nats-users.conf``: :func:`users_conf`; the
passwords come from a file next to it, ``nats-passwords.conf``) and of the test clusters
(:func:`users_block` with the passwords themselves). :func:`write_credentials` makes both
halves of the secret at once: each user's ``<user>.credentials`` (``user:password``, what
``nats_credentials_file`` reads) and ``nats-passwords.conf`` for the servers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .events import PEER_DISCOVERED, PEER_LOST, STREAM_NAME, SUBJECT_PREFIX

log = logging.getLogger(__name__)


class CredentialsError(RuntimeError):
    """A NATS credentials file cannot be read or made."""


__all__ = [
    "ADMIN_USER",
    "CredentialsError",
    "load_or_create_credentials",
    "read_credentials",
    "with_credentials",
    "PASSWORDS_FILE",
    "SERVICE_USERS",
    "USERS",
    "Permissions",
    "credentials_file_name",
    "inbox_prefix",
    "may_manage_stream",
    "password_variable",
    "permissions",
    "users_block",
    "users_conf",
    "write_credentials",
]

ADMIN_USER: Final = "admin"
SERVICE_USERS: Final = ("ingest", "query", "discovery", "replication")
"""The services that connect to NATS (the gateway does not), each as the user of its name."""
USERS: Final = (*SERVICE_USERS, ADMIN_USER)
PASSWORDS_FILE: Final = "nats-passwords.conf"
"""The servers' half of the secret: one ``PANDANODE_NATS_<USER>_PASSWORD: "…"`` line per user."""

_API: Final = f"$JS.API.STREAM.INFO.{STREAM_NAME}"
# What a consumer of the stream asks JetStream: create (durable or not) and delete its
# consumers, read the last message of a subject, acknowledge what it applied.
_READER: Final = (
    _API,
    f"$JS.API.STREAM.MSG.GET.{STREAM_NAME}",
    f"$JS.API.DIRECT.GET.{STREAM_NAME}",
    f"$JS.API.DIRECT.GET.{STREAM_NAME}.>",
    f"$JS.API.CONSUMER.CREATE.{STREAM_NAME}",
    f"$JS.API.CONSUMER.CREATE.{STREAM_NAME}.>",
    f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM_NAME}.*",
    f"$JS.API.CONSUMER.INFO.{STREAM_NAME}.*",
    f"$JS.API.CONSUMER.DELETE.{STREAM_NAME}.*",
    f"$JS.ACK.{STREAM_NAME}.>",
)


@dataclass(frozen=True, slots=True)
class Permissions:
    """The subjects one NATS user may publish to and subscribe to (allow lists)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def inbox_prefix(user: str) -> str:
    """The reply inbox prefix of ``user``'s connections: ``_INBOX.<user>``.

    A user name that is not one subject token (letters, digits, ``-``, ``_``) gets the NATS
    default ``_INBOX``.
    """
    return f"_INBOX.{user}" if re.fullmatch(r"[A-Za-z0-9_-]+", user) else "_INBOX"


def permissions(user: str) -> Permissions:
    """What ``user`` (one of :data:`USERS`) may publish and subscribe to.

    Raises:
        KeyError: not a user of the deployment.
    """
    inbox = (f"{inbox_prefix(user)}.>",)
    if user == ADMIN_USER:
        return Permissions(publish=(">",), subscribe=(">",))
    if user == "ingest":
        return Permissions(
            publish=(
                f"{SUBJECT_PREFIX}.operations.ingested",
                f"$JS.API.STREAM.CREATE.{STREAM_NAME}",
                f"$JS.API.STREAM.UPDATE.{STREAM_NAME}",
                _API,
            ),
            subscribe=inbox,
        )
    if user == "discovery":
        return Permissions(
            publish=(PEER_DISCOVERED.subject_filter, PEER_LOST.subject_filter, _API),
            subscribe=inbox,
        )
    if user in ("query", "replication"):
        return Permissions(publish=_READER, subscribe=inbox)
    raise KeyError(user)


def may_manage_stream(user: str | None) -> bool:
    """Whether a connection as ``user`` may create and update the stream.

    False for the users of this table that may not (every service but ingest: they wait for
    the stream instead); True for ingest, ``admin`` and any other user (no user, a user of a
    server configured otherwise), as before per-service users.
    """
    if user not in USERS:
        return True
    publish = permissions(user).publish
    return ">" in publish or f"$JS.API.STREAM.CREATE.{STREAM_NAME}" in publish


def password_variable(user: str) -> str:
    """The NATS config variable holding ``user``'s password: ``PANDANODE_NATS_<USER>_PASSWORD``."""
    return f"PANDANODE_NATS_{user.upper()}_PASSWORD"


def credentials_file_name(user: str) -> str:
    """The name of ``user``'s credentials file: ``<user>.credentials``."""
    return f"{user}.credentials"


def _subjects(subjects: tuple[str, ...], indent: str) -> str:
    items = "".join(f"{indent}  {json.dumps(subject)}\n" for subject in subjects)
    return f"[\n{items}{indent}]"


def users_block(
    passwords: Mapping[str, str] | None = None, *, node_user: tuple[str, str] | None = None
) -> str:
    """The NATS ``authorization`` block of the users of :data:`USERS`.

    Args:
        passwords: The users to write, each with its password (JSON-quoted); None: every user
            of :data:`USERS`, each password the config variable :func:`password_variable`
            names (defined by the file that includes this block, or by the environment).
        node_user: One more ``(user, password)`` allowed everything, as ``admin`` is (the
            embedded server's own user, :mod:`.nats_server`).
    """
    lines = ["authorization {", "  users: ["]
    users = list(USERS if passwords is None else passwords)
    if node_user is not None:
        users.append(node_user[0])
    for user in users:
        if node_user is not None and user == node_user[0]:
            allowed, password = permissions(ADMIN_USER), json.dumps(node_user[1])
        elif passwords is None:
            allowed, password = permissions(user), f"${password_variable(user)}"
        else:
            allowed, password = permissions(user), json.dumps(passwords[user])
        lines += [
            "    {",
            f"      user: {json.dumps(user)}",
            f"      password: {password}",
            "      permissions: {",
            f"        publish: {{ allow: {_subjects(allowed.publish, '        ')} }}",
            f"        subscribe: {{ allow: {_subjects(allowed.subscribe, '        ')} }}",
            "      }",
            "    }",
        ]
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def users_conf() -> str:
    """The deployment's ``users.conf``: every user and its permissions, passwords included.

    Generated (``pandanode config nats-users-conf``); ``deploy/nats/users.conf`` and
    ``deploy/k8s/base/nats-users.conf`` are this text (tests/deploy checks it). The passwords
    are read from :data:`PASSWORDS_FILE` in the same directory (a secret: see
    :func:`write_credentials`).
    """
    header = (
        "# NATS users of a pandanode deployment, one per service, each allowed only the\n"
        "# subjects its work needs (services/runtime/nats_users.py; generated by\n"
        "# `pandanode config nats-users-conf`, do not edit by hand). The passwords come from\n"
        f"# {PASSWORDS_FILE} next to this file, a secret made with\n"
        "# `pandanode config nats-credentials DIR` together with each service's credentials.\n"
        "#\n"
        "# ingest: publishes operations.ingested, creates and updates the PANDANODE stream.\n"
        "# discovery: publishes peer.discovered.* and peer.lost.*.\n"
        "# query, replication: read the stream through consumers of their own.\n"
        "# admin: anything, for operators (`pandanode check`, the nats CLI); never a service.\n"
        "# Each user receives replies only on its own inbox, _INBOX.<user>.>.\n"
    )
    return f'{header}\ninclude "{PASSWORDS_FILE}"\n\n{users_block()}'


def write_credentials(directory: Path) -> dict[str, str]:
    """Make a random password per user and write both halves of the secret into ``directory``.

    Writes ``<user>.credentials`` (``user:password``) per user of :data:`USERS` and
    :data:`PASSWORDS_FILE` for the NATS servers, each mode 0600. Existing files are replaced.

    Returns:
        The passwords by user.
    """
    directory.mkdir(parents=True, exist_ok=True)
    passwords = {user: secrets.token_hex(24) for user in USERS}
    for user, password in passwords.items():
        _write_secret(directory / credentials_file_name(user), f"{user}:{password}\n")
    _write_secret(
        directory / PASSWORDS_FILE,
        "".join(f"{password_variable(u)}: {json.dumps(p)}\n" for u, p in passwords.items()),
    )
    return passwords


def read_credentials(path: Path) -> tuple[str, str]:
    """The ``(user, password)`` of a credentials file (one line, ``user:password``).

    Raises:
        CredentialsError: the file cannot be read or is not ``user:password``.
    """
    try:
        text = path.read_text().strip()
    except OSError as err:
        raise CredentialsError(
            f"cannot read NATS credentials {path}: {err.strerror or err}"
        ) from None
    user, colon, password = text.partition(":")
    if not colon or not user or not password or "\n" in text:
        raise CredentialsError(f"NATS credentials {path} are not one line user:password")
    return user, password


def load_or_create_credentials(path: Path, user: str = "") -> tuple[str, str]:
    """The ``(user, password)`` in ``path``; a random pair made first if there is none.

    The file is created exclusively with mode 0600 (two processes starting at once agree on
    one pair). A file that others can read is replaced by a new pair: its password may be
    known.

    Args:
        path: The credentials file.
        user: The user name of a new pair (and of the file read: another one is replaced);
            empty: a random ``pandanode-…``.
    """
    for _ in range(3):
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            pass
        else:
            if not mode & (stat.S_IRWXG | stat.S_IRWXO):
                found = read_credentials(path)
                if not user or found[0] == user:
                    return found
            else:
                log.warning(
                    "pandanode: %s could be read by other users; replacing its credentials", path
                )
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        name, password = user or f"pandanode-{secrets.token_hex(4)}", secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue  # made by another process meanwhile: read that one
        with os.fdopen(fd, "w") as file:
            file.write(f"{name}:{password}\n")
        return name, password
    raise CredentialsError(f"cannot create NATS credentials {path}")


def with_credentials(url: str, user: str, password: str) -> str:
    """``url`` (``nats://host:port``) with ``user:password@`` (URL-quoted) in front of the host."""
    from urllib.parse import quote

    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "nats", url
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


def _write_secret(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
