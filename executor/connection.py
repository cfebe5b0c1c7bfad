"""Opening libvirt connections with a deadline and errors a person can act on.

`libvirt.open` blocks for as long as the transport lets it: an ssh or tcp host that drops
packets can hang it for minutes. `open_connection` therefore runs it in a daemon thread and
waits at most `timeout_s`; a connection that arrives after the deadline is closed by that
thread. Failures become `ConnectError(uri, code, reason)` where `code` is one of four kinds
(unreachable, auth, timeout, other) and the libvirt error code is kept for the record.

libvirt's default error handler prints every error on stderr, even ones evac handles; it is
replaced once, process-wide, by a silent one (errors still raise `libvirt.libvirtError`).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import libvirt

from planner.errors import EnvironmentProblem

DEFAULT_TIMEOUT_S = 15.0

_silenced = False
_silence_lock = threading.Lock()


class ConnectFailure(StrEnum):
    UNREACHABLE = "unreachable"  # no daemon there: refused, no route, no such socket, DNS
    AUTH = "auth"  # the daemon answered and refused us
    TIMEOUT = "timeout"  # no answer within the deadline
    OTHER = "other"


class ConnectError(EnvironmentProblem):
    """A host evac could not connect to; `code` says which kind of failure, `reason` libvirt's words."""

    def __init__(self, uri: str, code: ConnectFailure, reason: str, libvirt_code: int | None = None) -> None:
        self.uri = uri
        self.code = code
        self.reason = reason
        self.libvirt_code = libvirt_code
        super().__init__(f"{uri}: {code.value}: {reason}")


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    uri: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    readonly: bool = False

    def open(self) -> Any:
        return open_connection(self.uri, timeout_s=self.timeout_s, readonly=self.readonly)


def silence_libvirt_stderr() -> None:
    """Replaces libvirt's print-to-stderr error handler with a silent one (idempotent)."""
    global _silenced
    with _silence_lock:
        if not _silenced:
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            _silenced = True


_AUTH_CODES = frozenset({
    libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_CANCELLED, libvirt.VIR_ERR_ACCESS_DENIED,
    getattr(libvirt, "VIR_ERR_AUTH_UNAVAILABLE", 94),
})
_UNREACHABLE_WORDS = ("connection refused", "no such file", "no route to host", "network is unreachable",
                      "name or service not known", "could not resolve", "temporary failure in name resolution",
                      "connection reset", "host is down", "cannot recv data", "end of file while reading")
_AUTH_WORDS = ("permission denied", "authentication", "host key verification failed", "access denied")
_TIMEOUT_WORDS = ("timed out", "timeout")


def classify_libvirt_error(code: int, message: str) -> ConnectFailure:
    """Sorts a libvirt connect error into one of the four kinds, by code first, then by its words."""
    text = message.lower()
    if code in _AUTH_CODES or any(w in text for w in _AUTH_WORDS):
        return ConnectFailure.AUTH
    if any(w in text for w in _TIMEOUT_WORDS):
        return ConnectFailure.TIMEOUT
    if code in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_NO_CONNECT) and any(
        w in text for w in _UNREACHABLE_WORDS
    ):
        return ConnectFailure.UNREACHABLE
    if any(w in text for w in _UNREACHABLE_WORDS):
        return ConnectFailure.UNREACHABLE
    return ConnectFailure.OTHER


def open_connection(uri: str, timeout_s: float = DEFAULT_TIMEOUT_S, readonly: bool = False) -> Any:
    """A `libvirt.virConnect` to `uri`, or `ConnectError` after at most `timeout_s` seconds.

    The URI must have passed `executor.uri.check_uri` first: this function does not judge it.
    """
    silence_libvirt_stderr()
    done = threading.Event()
    lock = threading.Lock()
    outcome: dict[str, Any] = {}
    abandoned = False

    def attempt() -> None:
        nonlocal abandoned
        try:
            conn = libvirt.openReadOnly(uri) if readonly else libvirt.open(uri)
        except libvirt.libvirtError as exc:
            with lock:
                outcome["error"] = exc
        except Exception as exc:  # a bug or a binding quirk: still report it for this host, never hang
            with lock:
                outcome["unexpected"] = exc
        else:
            with lock:
                if abandoned:  # the caller gave up on us: do not leak the connection
                    _close_quietly(conn)
                else:
                    outcome["conn"] = conn
        done.set()

    worker = threading.Thread(target=attempt, name=f"libvirt-open {uri}", daemon=True)
    worker.start()
    finished = done.wait(timeout_s)
    with lock:
        if not finished and "conn" not in outcome and "error" not in outcome and "unexpected" not in outcome:
            abandoned = True
            raise ConnectError(uri, ConnectFailure.TIMEOUT, f"no answer within {timeout_s:g} s")
    if "conn" in outcome:
        if outcome["conn"] is None:  # very old bindings returned None instead of raising
            raise ConnectError(uri, ConnectFailure.OTHER, "libvirt returned no connection")
        return outcome["conn"]
    if "unexpected" in outcome:
        exc = outcome["unexpected"]
        raise ConnectError(uri, ConnectFailure.OTHER, f"{type(exc).__name__}: {exc}")
    err: libvirt.libvirtError = outcome["error"]
    code = err.get_error_code() or 0
    message = err.get_error_message() or str(err)
    raise ConnectError(uri, classify_libvirt_error(code, message), message, libvirt_code=code)


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()
