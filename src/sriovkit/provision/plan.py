"""From a node policy and the host's state to the ordered steps that make the host match it.

Pure: no I/O. The host's state comes in as a `HostState` (discovery snapshot plus the few
facts discovery does not carry), the VFs pods hold come in as `allocated`. Every problem is
found before anything is planned to run, and all of them are reported at once.

Kernel rules the order follows:
- `sriov_numvfs` changes from one non-zero count to another only through 0; going through 0
  (or to 0) removes every VF of the PF, so any allocated VF on it blocks the change.
- VFs the kernel creates come up with their default driver (igbvf, iavf ...); a VF in a
  vfio-pci range is then rebound. A VF outside every vfio-pci range gets its default driver back.
- The PF's MTU is set before its VFs' (a VF cannot exceed what the PF carries on some NICs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sriovkit.errors import SriovkitError
from sriovkit.host.model import USERSPACE_DRIVERS, VFIO_DRIVER, HostSnapshot, PciDevice
from sriovkit.provision.policy import DeviceType, NicSelector, NodePolicy, Policy
from sriovkit.resources.ranges import parse_indexed_names
from sriovkit.resources.selectors import alternatives

KERNEL_DEFAULT = "(kernel default)"


class PlanRefused(SriovkitError):
    """The policy cannot be applied to this host; `problems` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class HostState:
    """What planning needs to know about the node."""

    snapshot: HostSnapshot
    mtus: Mapping[str, int] = field(default_factory=dict)  # netdev -> MTU
    loaded_drivers: frozenset[str] = frozenset()  # names under /sys/bus/pci/drivers
    default_route_netdevs: frozenset[str] = frozenset()


class StepKind(StrEnum):
    NUM_VFS = "sriov_numvfs"
    DRIVER = "driver"
    MTU = "mtu"


@dataclass(frozen=True, slots=True)
class Step:
    """One kernel change. A VF step names the VF by PF and index: a VF the plan creates has
    no address yet (`vf_address` None); the apply step finds it through the PF's virtfnN link."""

    kind: StepKind
    policy: str
    pf_address: str
    pf_netdev: str | None
    current: str | None  # None: not known before the plan runs (a VF it creates)
    target: str  # for DRIVER: a driver name or KERNEL_DEFAULT
    vf_index: int | None = None
    vf_address: str | None = None

    @property
    def subject(self) -> str:
        pf = self.pf_netdev or self.pf_address
        if self.vf_index is None:
            return pf
        return f"{pf} vf {self.vf_index}" + (f" ({self.vf_address})" if self.vf_address else " (new)")

    def describe(self) -> str:
        return f"{self.subject}: {self.kind.value} {self.current if self.current is not None else '-'} -> {self.target}"

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind.value, "policy": self.policy, "pfAddress": self.pf_address,
                "pfName": self.pf_netdev, "vfIndex": self.vf_index, "vfAddress": self.vf_address,
                "current": self.current, "target": self.target}


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.steps)

    def as_json(self) -> list[dict[str, object]]:
        return [s.as_json() for s in self.steps]


@dataclass(slots=True)
class _PfTarget:
    """Everything the policies ask of one PF, merged."""

    pf: PciDevice
    num_vfs: int
    num_vfs_from: str
    mtu: int | None = None
    mtu_from: str | None = None
    vf_types: dict[int, tuple[DeviceType, str]] = field(default_factory=dict)  # index -> (type, policy)


def plan(policy: Policy, state: HostState, *, allocated: Iterable[str] = ()) -> Plan:
    """The steps that make the host match `policy`, or PlanRefused naming every problem.

    `allocated`: PCI addresses of VFs pods hold now; the plan never removes or rebinds them.
    """
    problems: list[str] = []
    targets = _merge_policies(policy, state, problems)
    in_use = frozenset(allocated)
    steps: list[Step] = []
    for target in targets.values():
        pf_steps = _pf_steps(target, state)
        _check_pf_steps(target, pf_steps, state, in_use, policy.allow_default_route_pf, problems)
        steps.extend(pf_steps)
    if problems:
        raise PlanRefused(problems)
    return Plan(tuple(steps))


def _merge_policies(policy: Policy, state: HostState, problems: list[str]) -> dict[str, _PfTarget]:
    targets: dict[str, _PfTarget] = {}
    pfs = state.snapshot.physical_functions()
    for rule in policy.policies:
        matched = [pf for pf in pfs if selects(rule.nic_selector, pf)]
        if not matched:
            problems.append(f"policy {rule.name}: nicSelector {_selector_text(rule.nic_selector)} "
                            f"matches no SR-IOV PF on this node (PFs: {_pf_list(pfs)})")
        if rule.device_type is DeviceType.VFIO_PCI and matched and VFIO_DRIVER not in state.loaded_drivers:
            problems.append(f"policy {rule.name}: deviceType vfio-pci but the vfio-pci driver is not loaded "
                            "(modprobe vfio-pci)")
        for pf in matched:
            _merge_rule(rule, pf, targets, problems)
    return targets


def _merge_rule(rule: NodePolicy, pf: PciDevice, targets: dict[str, _PfTarget], problems: list[str]) -> None:
    name = pf.netdev or pf.pci_address
    target = targets.setdefault(pf.pci_address, _PfTarget(pf, rule.num_vfs, rule.name))
    if target.num_vfs != rule.num_vfs:
        problems.append(f"policy {rule.name}: numVfs {rule.num_vfs} for {name} conflicts with "
                        f"numVfs {target.num_vfs} from policy {target.num_vfs_from}")
        return
    if pf.total_vfs is not None and rule.num_vfs > pf.total_vfs:
        problems.append(f"policy {rule.name}: numVfs {rule.num_vfs} is above {name}'s sriov_totalvfs "
                        f"{pf.total_vfs}")
        return
    if rule.mtu is not None:
        if target.mtu is not None and target.mtu != rule.mtu:
            problems.append(f"policy {rule.name}: mtu {rule.mtu} for {name} conflicts with mtu {target.mtu} "
                            f"from policy {target.mtu_from}")
        else:
            target.mtu, target.mtu_from = rule.mtu, rule.name
    indexes = rule.vf_range(pf.netdev)
    wanted = sorted(indexes) if indexes is not None else list(range(rule.num_vfs))
    beyond = [i for i in wanted if i >= rule.num_vfs]
    if beyond:
        problems.append(f"policy {rule.name}: pfNames range for {name} names VF {beyond[0]} but numVfs is "
                        f"{rule.num_vfs} (VFs 0-{rule.num_vfs - 1})" if rule.num_vfs else
                        f"policy {rule.name}: pfNames range for {name} names VF {beyond[0]} but numVfs is 0")
    for index in wanted:
        if index >= rule.num_vfs:
            continue
        claimed = target.vf_types.get(index)
        if claimed is not None:
            problems.append(f"policy {rule.name}: VF {index} of {name} is already claimed by policy {claimed[1]}")
            continue
        target.vf_types[index] = (rule.device_type, rule.name)


def selects(selector: NicSelector, pf: PciDevice) -> bool:
    """Whether a policy's nicSelector takes this PF: every field given must match."""
    if selector.pf_names and pf.netdev not in {parse_indexed_names(e)[0] for e in selector.pf_names}:
        return False
    if selector.root_devices and pf.pci_address not in selector.root_devices:
        return False
    if selector.vendor is not None and pf.vendor != selector.vendor:
        return False
    return selector.device_id is None or pf.device == selector.device_id


def _pf_steps(target: _PfTarget, state: HostState) -> list[Step]:
    pf = target.pf
    steps: list[Step] = []

    def step(kind: StepKind, current: str | None, to: str, index: int | None = None,
             address: str | None = None) -> None:
        policy = target.vf_types[index][1] if index in target.vf_types else target.num_vfs_from
        if kind is StepKind.MTU and index is None and target.mtu_from:
            policy = target.mtu_from
        steps.append(Step(kind, policy, pf.pci_address, pf.netdev, current, to, index, address))

    recreated = pf.num_vfs != target.num_vfs
    if recreated:
        if pf.num_vfs and target.num_vfs:
            step(StepKind.NUM_VFS, str(pf.num_vfs), "0")
            step(StepKind.NUM_VFS, "0", str(target.num_vfs))
        else:
            step(StepKind.NUM_VFS, str(pf.num_vfs), str(target.num_vfs))
    if target.mtu is not None and pf.netdev and state.mtus.get(pf.netdev) != target.mtu:
        step(StepKind.MTU, _str(state.mtus.get(pf.netdev)), str(target.mtu))
    existing = {} if recreated else dict(enumerate(pf.vf_addresses))
    for index in range(target.num_vfs):
        device_type = target.vf_types.get(index, (DeviceType.NETDEVICE, ""))[0]
        address = existing.get(index)
        vf = state.snapshot.get(address) if address else None
        rebound = False
        if device_type is DeviceType.VFIO_PCI and (vf is None or vf.driver != VFIO_DRIVER):
            step(StepKind.DRIVER, vf.driver if vf else None, VFIO_DRIVER, index, address)
            rebound = True
        elif device_type is DeviceType.NETDEVICE and vf is not None and (
                vf.driver is None or vf.driver in USERSPACE_DRIVERS):
            step(StepKind.DRIVER, vf.driver, KERNEL_DEFAULT, index, address)
            rebound = True
        if device_type is DeviceType.NETDEVICE and target.mtu is not None:
            current = state.mtus.get(vf.netdev) if vf is not None and vf.netdev and not rebound else None
            if current != target.mtu:
                step(StepKind.MTU, _str(current), str(target.mtu), index, address)
    return steps


def _check_pf_steps(target: _PfTarget, steps: list[Step], state: HostState, allocated: frozenset[str],
                    allow_default_route: bool, problems: list[str]) -> None:
    if not steps:
        return
    pf = target.pf
    name = pf.netdev or pf.pci_address
    if pf.netdev in state.default_route_netdevs and not allow_default_route:
        problems.append(f"refusing to change {name} ({pf.pci_address}): it carries the node's default route "
                        f"(set allowDefaultRoutePf: true to allow); planned: {steps[0].describe()}")
    removed = [a for a in pf.vf_addresses if a in allocated] if pf.num_vfs != target.num_vfs else []
    if removed:
        problems.append(f"refusing to change {name} sriov_numvfs {pf.num_vfs} -> {target.num_vfs}: it removes "
                        f"every VF of {name}, and pods hold {_vf_list(pf, removed)}")
    for s in steps:
        if s.kind is StepKind.DRIVER and s.vf_address in allocated:
            problems.append(f"refusing to rebind {s.subject} from {s.current} to {s.target}: a pod holds it")


def _vf_list(pf: PciDevice, addresses: list[str]) -> str:
    return ", ".join(f"{a} (vf {pf.vf_addresses.index(a)})" for a in addresses)


def _selector_text(selector: NicSelector) -> str:
    parts = []
    if selector.pf_names:
        parts.append(f"pfNames={alternatives(list(selector.pf_names))}")  # as written, no Python list syntax
    if selector.root_devices:
        parts.append(f"rootDevices={alternatives(list(selector.root_devices))}")
    if selector.vendor:
        parts.append(f"vendor={selector.vendor}")
    if selector.device_id:
        parts.append(f"deviceID={selector.device_id}")
    return " ".join(parts)


def _pf_list(pfs: list[PciDevice]) -> str:
    return ", ".join(f"{pf.netdev or '-'} {pf.pci_address} {pf.vendor}:{pf.device}" for pf in pfs) or "none"


def _str(value: int | None) -> str | None:
    return None if value is None else str(value)
