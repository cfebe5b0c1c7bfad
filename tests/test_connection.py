"""Connections: failures are classified and never hang past the deadline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from executor.connection import ConnectError, ConnectFailure, ConnectionSpec, classify_libvirt_error, open_connection


def test_test_driver_opens() -> None:
    conn = open_connection("test:///default", timeout_s=5)
    try:
        assert conn.getHostname()
    finally:
        conn.close()
    conn = ConnectionSpec("test:///default", timeout_s=5, readonly=True).open()
    assert conn.isAlive() in (0, 1)
    conn.close()


def test_missing_unix_socket_is_unreachable(tmp_path: Path) -> None:
    uri = f"qemu+unix:///system?socket={tmp_path}/no-such-sock"
    with pytest.raises(ConnectError) as info:
        open_connection(uri, timeout_s=5)
    assert info.value.code is ConnectFailure.UNREACHABLE
    assert "No such file" in info.value.reason
    assert info.value.uri == uri and info.value.exit_code == 3



def test_closed_tcp_port_is_unreachable(closed_port: int) -> None:
    with pytest.raises(ConnectError) as info:
        open_connection(f"qemu+tcp://127.0.0.1:{closed_port}/system", timeout_s=5)
    assert info.value.code is ConnectFailure.UNREACHABLE
    assert "refused" in info.value.reason.lower()
    assert info.value.libvirt_code == 38



def test_silent_host_times_out_at_the_deadline(silent_port: int) -> None:
    start = time.monotonic()
    with pytest.raises(ConnectError) as info:
        open_connection(f"qemu+tcp://127.0.0.1:{silent_port}/system", timeout_s=0.5)
    elapsed = time.monotonic() - start
    assert info.value.code is ConnectFailure.TIMEOUT
    assert elapsed < 3.0  # generous: the point is "does not hang", not a speed figure


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (45, "authentication failed: no agent", ConnectFailure.AUTH),
        (38, "Cannot recv data: Permission denied (publickey).", ConnectFailure.AUTH),
        (38, "Cannot recv data: Host key verification failed.", ConnectFailure.AUTH),
        (38, "unable to connect to server at 'h:16509': No route to host", ConnectFailure.UNREACHABLE),
        (38, "Cannot recv data: ssh: Could not resolve hostname h: Name or service not known",
         ConnectFailure.UNREACHABLE),
        (38, "unable to connect to server: Connection timed out", ConnectFailure.TIMEOUT),
        (1, "internal error: something odd", ConnectFailure.OTHER),
    ],
)
def test_classification(code: int, message: str, kind: ConnectFailure) -> None:
    assert classify_libvirt_error(code, message) is kind
