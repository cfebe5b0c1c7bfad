"""The URI rules for the shell (collector, hypervisor, CLI). The rules themselves live in
`planner.uri_rules`, their one home, so that the inventory validator and every command judge URIs
alike; `check_run_uris` applies them to what one `evac run` would connect to."""

from __future__ import annotations

from collections.abc import Mapping

from planner.errors import Problem
from planner.model import Inventory
from planner.uri_rules import (
    check_migration_address,
    check_uri,
    is_insecure_transport,
    migration_uri,
    validate_uris,
)


def check_run_uris(inventory: Inventory, peer_uris: Mapping[str, str] | None = None, *,
                   allow_insecure_transport: bool = False, uri_overrides: Mapping[str, str] | None = None,
                   peer_option: str = "--peer-uri") -> list[Problem]:
    """Every problem with the URIs a run would use: each host's URI (the inventory's, or an override) and
    each peer URI (what a source daemon dials for p2p). The same in every mode of `evac run`: a dry run
    or a simulation must not pass what the real run would refuse. Unknown host names are problems too."""
    overrides = dict(uri_overrides or {})
    peers = dict(peer_uris or {})
    problems = [Problem(f"{peer_option} {name}", "URI given for a host that is not in the inventory")
                for name in peers if name not in inventory.host]
    problems += [Problem(f"URI of {name}", "URI given for a host that is not in the inventory")
                 for name in overrides if name not in inventory.host]
    for i, host in enumerate(inventory.hosts):
        uri = overrides.get(host.name) or host.uri
        if uri:
            where = f"URI of {host.name}" if host.name in overrides else f"hosts[{i}].uri ({host.name})"
            problems += check_uri(uri, allow_insecure_transport, where=where)
        peer = peers.get(host.name)
        if peer is not None and peer != uri:
            problems += check_uri(peer, allow_insecure_transport, where=f"{peer_option} {host.name}")
    return problems


__all__ = ["check_migration_address", "check_run_uris", "check_uri", "is_insecure_transport", "migration_uri",
           "validate_uris"]
