"""Safety rules for every libvirt connection URI and migration address evac reads (pure: no libvirt).

An inventory is untrusted input (NOTES §5): a libvirt URI can run a command on this machine
(`ext` transport, `command=`, `netcat=`), turn off host verification (`no_verify=1`,
`known_hosts_verify=ignore|auto`), or send credentials and guest memory in the clear (`tcp`).
`check_uri` returns every problem of one URI; `validate_uris` raises one `UsageError` naming
every bad URI. Only the query parameters libvirt documents for its remote driver are accepted,
each with the values known to be safe; anything else is refused rather than guessed about.

One source of truth: the inventory validator (`planner.inventory`, so `validate`, `plan`, `run
--dry-run` and `run --simulate` refuse what `collect` refuses), the hosts file (`executor.site`),
`evac collect`, `--peer-uri` and the real hypervisor all apply these rules. `executor.uri` re-exports
them for the shell. `qemu+tcp` is the one rule that depends on the command: an inventory may name
it (a lab on a trusted network), `is_insecure_transport` lets the validator warn, and connecting
refuses it unless `--allow-insecure-transport` is given in that run.

`check_migration_address` holds a host's `migration_address` to an IP address or a host name: the
executor puts it into `tcp://ADDRESS` for QEMU's migration stream, so a scheme, a port, a path or
URI options there would change where and how guest memory is sent.

Reference: https://libvirt.org/uri.html and https://libvirt.org/remote.html (transports and
extra parameters).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

from planner.errors import Problem, UsageError

# Drivers evac can work with: `qemu` (KVM/QEMU hosts) and `test` (libvirt's mock driver, unit tests).
KNOWN_DRIVERS = frozenset({"qemu", "test"})
SAFE_TRANSPORTS = frozenset({"", "unix", "ssh", "libssh", "libssh2", "tls"})
INSECURE_TRANSPORTS = frozenset({"tcp"})  # no encryption, SASL at best: only on request
REFUSED_TRANSPORTS = {"ext": "the `ext` transport runs an arbitrary local program"}

# Parameters that make libvirt run something of the URI's choosing: never accepted.
REFUSED_PARAMS = {
    "command": "`command=` names a program libvirt would run",
    "netcat": "`netcat=` names a program libvirt would run on the remote host",
}
# Accepted parameters and, when restricted, their safe values.
SAFE_PARAM_VALUES: Mapping[str, frozenset[str] | None] = {
    "name": None,  # the URI the remote daemon opens locally
    "socket": None,  # checked by `_check_socket_path`
    "keyfile": None,
    "known_hosts": None,
    "no_tty": None,
    "sshauth": None,
    "pkipath": None,
    "tls_priority": None,
    "no_verify": frozenset({"0"}),  # 1 = do not check the server certificate
    "known_hosts_verify": frozenset({"normal"}),  # auto = trust on first use, ignore = never check
    "mode": frozenset({"auto", "legacy", "direct"}),
    "proxy": frozenset({"auto", "netcat", "native"}),
}
# Paths of the local `qemu` driver evac accepts (`embed` would run QEMU inside evac itself).
QEMU_PATHS = frozenset({"/system", "/session"})

# A socket path is interpolated into a remote shell command by the ssh transports: keep it plain.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+/@=-]*$")
_SAFE_HOST = re.compile(r"^[A-Za-z0-9._:\[\]%-]*$")
_SAFE_USER = re.compile(r"^[A-Za-z0-9._@-]*$")


def check_uri(uri: str, allow_insecure_transport: bool = False, where: str | None = None) -> list[Problem]:
    """Every reason not to connect to `uri`; empty when it is safe. `where` defaults to the URI itself."""
    here = where if where is not None else uri
    problems: list[Problem] = []

    def bad(message: str) -> None:
        problems.append(Problem(here, message))

    if not isinstance(uri, str) or not uri.strip():
        return [Problem(here, "empty libvirt URI")]
    if any(ch.isspace() or ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in uri):
        return [Problem(here, "a libvirt URI must not contain spaces or control characters")]
    try:
        parts = urlsplit(uri)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        return [Problem(here, f"malformed URI: {exc}")]
    if not parts.scheme or "://" not in uri:
        return [Problem(here, "malformed URI: expected driver[+transport]://[user@][host][:port]/path[?params]")]

    driver, _, transport = parts.scheme.partition("+")
    if driver not in KNOWN_DRIVERS:
        bad(f"unknown libvirt driver {driver!r} (evac works with: {', '.join(sorted(KNOWN_DRIVERS))})")
    if transport in REFUSED_TRANSPORTS:
        bad(f"refused: {REFUSED_TRANSPORTS[transport]}")
    elif transport in INSECURE_TRANSPORTS:
        if not allow_insecure_transport:
            bad("refused: the `tcp` transport is unencrypted and unauthenticated "
                "(use ssh or tls, or pass --allow-insecure-transport on a trusted lab network)")
    elif transport not in SAFE_TRANSPORTS:
        bad(f"unknown transport {transport!r} (use one of: ssh, libssh, libssh2, tls, unix)")

    if parts.hostname is not None and (not _SAFE_HOST.match(parts.hostname) or parts.hostname.startswith("-")):
        bad(f"host name {parts.hostname!r} contains characters not allowed in a host name")
    if parts.username is not None and (not _SAFE_USER.match(parts.username) or parts.username.startswith("-")):
        bad(f"user name {parts.username!r} contains characters not allowed in a user name")
    if parts.password is not None:
        bad("a password in the URI would be stored in the inventory and the journal; use ssh keys or SASL")
    if port is not None and transport in ("", "unix"):
        bad("a port makes no sense without a network transport")
    if parts.fragment:
        bad("a libvirt URI has no #fragment")

    if driver == "qemu" and parts.path not in QEMU_PATHS:
        bad(f"qemu URI path must be /system or /session, not {parts.path or '(empty)'!r}")
    if driver == "test" and transport == "" and parts.path != "/default" and not _SAFE_PATH.match(parts.path):
        bad(f"test driver path must be /default or an absolute file path, not {parts.path!r}")

    try:
        params = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        bad(f"malformed query string: {exc}")
        params = []
    for key, value in params:
        problems.extend(_check_param(here, transport, key, value, allow_insecure_transport))
    return problems


def _check_param(here: str, transport: str, key: str, value: str, allow_insecure: bool) -> list[Problem]:
    name = key.lower()
    if name in REFUSED_PARAMS:
        return [Problem(here, f"refused: {REFUSED_PARAMS[name]}")]
    if name not in SAFE_PARAM_VALUES:
        return [Problem(here, f"unknown URI parameter {key!r} (evac accepts: {', '.join(sorted(SAFE_PARAM_VALUES))})")]
    allowed = SAFE_PARAM_VALUES[name]
    if allowed is not None and value not in allowed:
        why = {
            "no_verify": "refused: `no_verify` other than 0 skips the server certificate check",
            "known_hosts_verify": f"refused: `known_hosts_verify={value}` does not verify the ssh host key "
                                  "(only `normal` is accepted)",
        }.get(name, f"parameter {key}={value!r} not one of: {', '.join(sorted(allowed))}")
        return [Problem(here, why)]
    if name == "socket":
        return _check_socket_path(here, value)
    if name == "name" and value:
        # The remote daemon opens this URI; it must pass the same checks (it runs with its rights).
        return [Problem(here, f"in name=: {p.message}") for p in check_uri(value, allow_insecure, where=here)]
    return []


def _check_socket_path(here: str, path: str) -> list[Problem]:
    """A unix socket path: absolute, no `..`, no characters a shell would interpret."""
    if not _SAFE_PATH.match(path):
        return [Problem(here, f"socket path {path!r} must be absolute and contain only letters, digits and ._+/@=-")]
    if "/../" in path + "/" or path.endswith("/.."):
        return [Problem(here, f"socket path {path!r} must not contain '..'")]
    return []


def validate_uris(uris: Iterable[str] | Mapping[str, str], allow_insecure_transport: bool = False,
                  what: str = "libvirt URIs") -> None:
    """Raises one `UsageError` naming every bad URI (and every problem of each); returns if all are safe.

    `uris` may map a location (`hosts[3].uri`, a host name) to the URI, so messages say where it came from.
    """
    items = list(uris.items()) if isinstance(uris, Mapping) else [(None, u) for u in uris]
    problems: list[Problem] = []
    for where, uri in items:
        problems.extend(check_uri(uri, allow_insecure_transport, where=where if where is None else f"{where} ({uri})"))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise UsageError(what, problems)


def is_insecure_transport(uri: str) -> bool:
    """True for a URI whose transport is unencrypted (`qemu+tcp://`): allowed only on request."""
    scheme = uri.partition("://")[0] if isinstance(uri, str) else ""
    return scheme.partition("+")[2].lower() in INSECURE_TRANSPORTS


# RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_migration_address(address: str, where: str) -> list[Problem]:
    """A `migration_address` must be a bare IP address or host name (no scheme, port, path or options)."""
    if not isinstance(address, str) or not address:
        return [Problem(where, "must be an IP address or a host name")]
    bare = address[1:-1] if address.startswith("[") and address.endswith("]") else address
    try:
        ipaddress.ip_address(bare)
        return []
    except ValueError:
        pass
    if bare == address and len(address) <= 253 and all(_HOST_LABEL.match(label)
                                                          for label in address.rstrip(".").split(".")):
        return []
    return [Problem(where, f"{address!r} is not an IP address or a host name (no scheme, port, path or options: "
                           "the executor sends guest memory to tcp://ADDRESS)")]


def migration_uri(address: str) -> str:
    """QEMU's migration stream URI for a checked `migration_address` (IPv6 in brackets)."""
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return f"tcp://{host}"
