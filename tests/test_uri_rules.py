"""planner.uri_rules: every refused pattern is refused with a reason, every lab/production shape passes."""

from __future__ import annotations

import pytest

from planner.errors import UsageError
from planner.uri_rules import check_uri, is_insecure_transport, migration_uri, validate_uris

GOOD = [
    "qemu:///system",
    "qemu:///session",
    "qemu+ssh://root@h01.example.net/system",
    "qemu+ssh://h01.example.net:2222/system?keyfile=/root/.ssh/id_ed25519",
    "qemu+ssh://h01/system?known_hosts_verify=normal&no_tty=1",
    "qemu+libssh2://h01/system?known_hosts=/etc/evac/known_hosts&sshauth=privkey",
    "qemu+tls://h01.example.net/system",
    "qemu+tls://h01.example.net/system?no_verify=0&pkipath=/etc/pki/evac",
    "qemu+unix:///system?socket=/tmp/evac-lab-pytest-1/h1/run/libvirt/libvirt-sock",
    "qemu+ssh://[fd00::1]/system",
    "test:///default",
    "test:///work/main/tests/data/xml/testdrv-h1.xml",
]


@pytest.mark.parametrize("uri", GOOD)
def test_safe_uris_pass(uri: str) -> None:
    assert check_uri(uri) == []


REFUSED = [
    ("qemu+ext:///system?command=/bin/sh", "ext"),
    ("qemu+ext:///system", "`ext` transport"),
    ("qemu+ssh://h01/system?command=/tmp/evil", "command="),
    ("qemu+ssh://h01/system?netcat=/tmp/evil", "netcat="),
    ("qemu+ssh://h01/system?NETCAT=/tmp/evil", "netcat="),
    ("qemu+tls://h01/system?no_verify=1", "no_verify"),
    ("qemu+ssh://h01/system?known_hosts_verify=ignore", "known_hosts_verify=ignore"),
    ("qemu+ssh://h01/system?known_hosts_verify=auto", "known_hosts_verify=auto"),
    ("qemu+tcp://h01/system", "tcp"),
    ("qemu+ssh://h01/system?socket=/run/x;rm -rf /", "spaces"),
    ("qemu+ssh://h01/system?socket=/run/x%3Brm", "socket path"),
    ("qemu+ssh://h01/system?socket=relative/sock", "socket path"),
    ("qemu+unix:///system?socket=/tmp/../etc/sock", ".."),
    ("xen:///system", "unknown libvirt driver"),
    ("lxc:///", "unknown libvirt driver"),
    ("qemu+carrierpigeon://h01/system", "unknown transport"),
    ("qemu+ssh://h01/system?frobnicate=1", "unknown URI parameter"),
    ("qemu+ssh://-oProxyCommand=evil/system", "host name"),
    ("qemu+ssh://-oProxyCommand=x@h01/system", "user name"),
    ("qemu+ssh://root:secret@h01/system", "password"),
    ("qemu+ssh://h01:99999/system", "malformed"),
    ("qemu+ssh://h01:port/system", "malformed"),
    ("qemu:///embed?root=/tmp/x", "/system or /session"),
    ("qemu+ssh://h01/system?name=qemu%2Bext:///system", "in name="),
    ("qemu+ssh://h01/system#frag", "fragment"),
    ("h01.example.net", "malformed"),
    ("", "empty"),
    ("qemu+unix://:5/system", "port"),
]


@pytest.mark.parametrize(("uri", "needle"), REFUSED)
def test_unsafe_or_malformed_uris_are_refused_with_a_reason(uri: str, needle: str) -> None:
    problems = check_uri(uri)
    assert problems, f"{uri!r} should be refused"
    assert any(needle in p.message for p in problems), [p.message for p in problems]
    assert all(p.where == uri for p in problems)


def test_tcp_is_accepted_only_on_request() -> None:
    assert check_uri("qemu+tcp://10.77.0.11/system", allow_insecure_transport=True) == []
    # The switch does not open the other doors.
    assert check_uri("qemu+ext:///system", allow_insecure_transport=True)
    assert check_uri("qemu+tcp://h/system?command=/x", allow_insecure_transport=True)


def test_validate_uris_names_every_bad_one_at_once() -> None:
    uris = ["qemu:///system", "qemu+ext:///system", "qemu+tcp://h2/system", "xen:///"]
    with pytest.raises(UsageError) as info:
        validate_uris(uris)
    text = str(info.value)
    assert "qemu+ext:///system" in text and "qemu+tcp://h2/system" in text and "xen:///" in text
    assert "qemu:///system:" not in text
    assert info.value.exit_code == 2


def test_validate_uris_with_locations() -> None:
    with pytest.raises(UsageError) as info:
        validate_uris({"hosts[1].uri": "qemu+ssh://h/system?no_verify=1"})
    assert info.value.problems[0].where == "hosts[1].uri (qemu+ssh://h/system?no_verify=1)"
    validate_uris({"hosts[0].uri": "qemu+ssh://h/system"})  # no exception


@pytest.mark.parametrize("uri", ["qemu+ssh://h\x7f/system", "qemu+ssh://h\x85/system", "qemu+ssh://h\x9b/system"])
def test_del_and_c1_controls_are_refused(uri: str) -> None:
    assert any("control characters" in p.message for p in check_uri(uri))


def test_insecure_transport_and_migration_uri() -> None:
    assert is_insecure_transport("qemu+tcp://10.0.0.1/system") and is_insecure_transport("qemu+TCP://h/system")
    assert not is_insecure_transport("qemu+ssh://h/system") and not is_insecure_transport("qemu:///system")
    assert migration_uri("10.0.0.1") == "tcp://10.0.0.1" and migration_uri("fd00::1") == "tcp://[fd00::1]"
    assert migration_uri("[fd00::1]") == "tcp://[fd00::1]" and migration_uri("h02.example.net") == "tcp://h02.example.net"
