"""Which hosts suit a VM, whatever else the plan does: every static host rule, written ONCE.

A host rule compares what a VM needs from any host it runs on (`Needs`: arch, CPU model and
features, shared storage, networks, host labels) with what the host offers (inventory v1, "Hosts"
and "VMs"; `requires_host_labels` from plan v1's reconfiguration section). Each rule is a value with
* `fails(needs, host)`: the solver-free test (the hot loop of candidate pruning calls it);
* `reason(needs, host)`: why this one host does not suit the VM, for `eligible` and the checker;
* `nowhere(needs, hosts)`: what none of `hosts` offers at all, for the explainer ("no host offers
  network br-db"), most specific first;
* `some(needs)`: the words after "k of n hosts …" when the rule excludes only some hosts.
Candidates, placement (through the candidates), the checker (suitability of every destination and
of every VM's current host in a repair), the explainer and the baselines all derive from
`HOST_RULES`; adding a rule touches this module only. Capacity is not a host rule: it depends on
what else is on the host (`planner.capacity`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from planner.model import VM, Host, Inventory


@dataclass(frozen=True, slots=True)
class Needs:
    """What a VM needs from every host it runs on; VMs with equal needs suit the same hosts."""

    arch: str | None
    cpu_model: str | None
    cpu_features: frozenset[str]
    storage: frozenset[str]
    networks: frozenset[str]
    host_labels: frozenset[tuple[str, str]] = frozenset()


def needs_of(vm: VM, inventory: Inventory) -> Needs:
    """A VM's needs; its arch is that of the host it runs on (inventory v1 gives VMs no arch of their own)."""
    src = inventory.host.get(vm.host)
    return Needs(src.arch if src is not None else None, vm.cpu_model, vm.cpu_features, vm.shared_storage,
                 vm.networks, frozenset(vm.requires_host_labels.items()))


def _names(items: frozenset[str]) -> str:
    return ", ".join(sorted(items))


class HostRule(Protocol):
    name: ClassVar[str]

    def fails(self, needs: Needs, host: Host) -> bool: ...

    def reason(self, needs: Needs, host: Host) -> str: ...

    def nowhere(self, needs: Needs, hosts: Sequence[Host]) -> list[str]: ...

    def some(self, needs: Needs) -> str: ...


@dataclass(frozen=True, slots=True)
class SameArch:
    name: ClassVar[str] = "arch"

    def fails(self, needs: Needs, host: Host) -> bool:
        return needs.arch is not None and host.arch is not None and needs.arch != host.arch

    def reason(self, needs: Needs, host: Host) -> str:
        return f"host {host.name} is {host.arch}, the VM runs on {needs.arch}"

    def nowhere(self, needs: Needs, hosts: Sequence[Host]) -> list[str]:
        return [f"no host has arch {needs.arch}"] if all(self.fails(needs, h) for h in hosts) else []

    def some(self, needs: Needs) -> str:
        return f"are not {needs.arch}"


@dataclass(frozen=True, slots=True)
class CpuModel:
    name: ClassVar[str] = "cpu_model"

    def fails(self, needs: Needs, host: Host) -> bool:
        return needs.cpu_model is not None and host.cpu_model is not None and needs.cpu_model != host.cpu_model

    def reason(self, needs: Needs, host: Host) -> str:
        return f"host {host.name} offers CPU model {host.cpu_model}, the VM needs {needs.cpu_model}"

    def nowhere(self, needs: Needs, hosts: Sequence[Host]) -> list[str]:
        return [f"no host offers CPU model {needs.cpu_model}"] if all(self.fails(needs, h) for h in hosts) else []

    def some(self, needs: Needs) -> str:
        return f"do not offer CPU model {needs.cpu_model}"


@dataclass(frozen=True, slots=True)
class CpuFeatures:
    name: ClassVar[str] = "cpu_features"

    def fails(self, needs: Needs, host: Host) -> bool:
        return not needs.cpu_features <= host.cpu_features

    def reason(self, needs: Needs, host: Host) -> str:
        return f"host {host.name} lacks CPU features {_names(needs.cpu_features - host.cpu_features)}"

    def nowhere(self, needs: Needs, hosts: Sequence[Host]) -> list[str]:
        offered = frozenset().union(*(h.cpu_features for h in hosts))
        return [f"no host offers CPU feature {f}" for f in sorted(needs.cpu_features - offered)]

    def some(self, needs: Needs) -> str:
        return f"lack CPU features {_names(needs.cpu_features)}"


@dataclass(frozen=True, slots=True)
class SharedStorage:
    name: ClassVar[str] = "storage"

    def fails(self, needs: Needs, host: Host) -> bool:
        return not needs.storage <= host.storage

    def reason(self, needs: Needs, host: Host) -> str:
        return f"host {host.name} does not mount storage {_names(needs.storage - host.storage)}"

    def nowhere(self, needs: Needs, hosts: Sequence[Host]) -> list[str]:
        mounted = frozenset().union(*(h.storage for h in hosts))
        return [f"no host mounts storage {s}" for s in sorted(needs.storage - mounted)]

    def some(self, needs: Needs) -> str:
        return f"do not mount storage {_names(needs.storage)}"


@dataclass(frozen=True, slots=True)
class Networks:
    name: ClassVar[str] = "networks"

    def fails(self, needs: Needs, host: Host) -> bool:
        return not needs.networks <= host.networks

    def reason(self, needs: Needs, host: Host) -> str:
        return f"host {host.name} does not offer network {_names(needs.networks - host.networks)}"

    def nowhere(self, needs: Needs, hosts: Sequence[Host]) -> list[str]:
        offered = frozenset().union(*(h.networks for h in hosts))
        return [f"no host offers network {n}" for n in sorted(needs.networks - offered)]

    def some(self, needs: Needs) -> str:
        return f"do not offer network {_names(needs.networks)}"


def _label_text(pairs: frozenset[tuple[str, str]]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(pairs))


def _lacks_labels(labels: Mapping[str, str], pairs: frozenset[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    return frozenset((k, v) for k, v in pairs if labels.get(k) != v)


@dataclass(frozen=True, slots=True)
class HostLabels:
    """`vms[].requires_host_labels`: a VM-to-host "must" rule (plan v1, reconfiguration section)."""

    name: ClassVar[str] = "requires_host_labels"

    def fails(self, needs: Needs, host: Host) -> bool:
        return bool(needs.host_labels) and bool(_lacks_labels(host.labels, needs.host_labels))

    def reason(self, needs: Needs, host: Host) -> str:
        return f"host {host.name} lacks labels {_label_text(_lacks_labels(host.labels, needs.host_labels))}"

    def nowhere(self, needs: Needs, hosts: Sequence[Host]) -> list[str]:
        if not needs.host_labels or not all(self.fails(needs, h) for h in hosts):
            return []
        return [f"no host has labels {_label_text(needs.host_labels)}"]

    def some(self, needs: Needs) -> str:
        return f"lack labels {_label_text(needs.host_labels)}"


HOST_RULES: tuple[HostRule, ...] = (SameArch(), CpuModel(), CpuFeatures(), SharedStorage(), Networks(), HostLabels())


def suits(needs: Needs, host: Host) -> bool:
    """Every host rule holds: the host offers everything the VM needs (state and size not considered)."""
    return not any(rule.fails(needs, host) for rule in HOST_RULES)


def unsuited_reasons(needs: Needs, host: Host) -> list[str]:
    """Why `host` does not offer what the VM needs, one reason per broken rule (empty: it suits)."""
    return [rule.reason(needs, host) for rule in HOST_RULES if rule.fails(needs, host)]
