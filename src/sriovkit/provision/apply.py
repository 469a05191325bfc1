"""Carry a `Plan` out through the `Provisioner` port, and read the state planning needs.

`SysfsProvisioner` serves the port with the kernel's files under a host root (sriov_numvfs;
driver_override + unbind + drivers_probe; class/net/<if>/mtu); the entry points' composition
roots choose the implementation and hand it in.

Steps run in plan order; the first one the kernel refuses stops the run, and the error says
which step failed, the kernel's answer, and every step already applied (nothing is rolled
back: each applied step left the node in a state a re-run starts from).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sriovkit.errors import SriovkitError
from sriovkit.host.discover import discover
from sriovkit.host.model import VFIO_DRIVER
from sriovkit.host.routes import default_route_netdevs
from sriovkit.host.sysfs import Sysfs, link_name, list_dir, read_int
from sriovkit.provision.plan import KERNEL_DEFAULT, HostState, Plan, Step, StepKind

VF_APPEAR_TIMEOUT_S = 10.0
_T = TypeVar("_T")


class Provisioner(Protocol):
    """The writes provisioning makes. Each raises OSError with the kernel's errno on refusal."""

    def set_num_vfs(self, pf_address: str, num_vfs: int) -> None: ...

    def bind_driver(self, pci_address: str, driver: str | None) -> None:
        """Bind to `driver`, or to the kernel's default driver for the device when None."""

    def set_mtu(self, netdev: str, mtu: int) -> None: ...


class ApplyError(SriovkitError):
    """A step failed; `applied` are the steps done before it."""

    def __init__(self, step: Step, reason: str, applied: list[Step]) -> None:
        done = "; ".join(s.describe() for s in applied) or "nothing"
        super().__init__(f"{step.describe()}: {reason} (already applied: {done})")
        self.step, self.reason, self.applied = step, reason, applied


def read_host_state(sysfs: Sysfs, proc_root: str) -> HostState:
    snapshot = discover(sysfs)
    netdevs = {n for d in snapshot for n in d.netdevs}
    mtus = {n: m for n in netdevs if (m := read_int(os.path.join(sysfs.net_class_dir(n), "mtu"))) is not None}
    return HostState(snapshot=snapshot, mtus=mtus,
                     loaded_drivers=frozenset(list_dir(os.path.join(sysfs.sys, "bus", "pci", "drivers"))),
                     default_route_netdevs=default_route_netdevs(proc_root))


def apply(plan: Plan, provisioner: Provisioner, sysfs: Sysfs, *,
          on_step: Callable[[Step], None] | None = None, timeout_s: float = VF_APPEAR_TIMEOUT_S) -> list[Step]:
    """Run every step in order; returns them. Raises ApplyError at the first refusal."""
    applied: list[Step] = []
    for step in plan.steps:
        try:
            _run(step, provisioner, sysfs, timeout_s)
        except OSError as exc:
            raise ApplyError(step, _kernel_reason(exc), applied) from None
        except _StepFailed as exc:
            raise ApplyError(step, str(exc), applied) from None
        applied.append(step)
        if on_step is not None:
            on_step(step)
    return applied


class _StepFailed(SriovkitError):
    pass


def _run(step: Step, provisioner: Provisioner, sysfs: Sysfs, timeout_s: float) -> None:
    if step.kind is StepKind.NUM_VFS:
        provisioner.set_num_vfs(step.pf_address, int(step.target))
        return
    if step.kind is StepKind.MTU and step.vf_index is None:
        if not step.pf_netdev:
            raise _StepFailed("the PF has no interface")
        provisioner.set_mtu(step.pf_netdev, int(step.target))
        return
    address = _vf_address(sysfs, step, timeout_s)
    if step.kind is StepKind.DRIVER:
        driver = None if step.target == KERNEL_DEFAULT else step.target
        provisioner.bind_driver(address, driver)
        bound = link_name(os.path.join(sysfs.pci_device_dir(address), "driver"))
        if driver is not None and bound != driver:
            raise _StepFailed(f"the kernel bound {bound or 'no driver'} instead of {driver}")
        if driver is None and bound in (None, VFIO_DRIVER):
            raise _StepFailed(f"the kernel bound {bound or 'no driver'}, not the VF's own driver")
        return
    netdev = _vf_netdev(sysfs, address, timeout_s)
    provisioner.set_mtu(netdev, int(step.target))


def _vf_address(sysfs: Sysfs, step: Step, timeout_s: float) -> str:
    link = os.path.join(sysfs.pci_device_dir(step.pf_address), f"virtfn{step.vf_index}")
    address = _wait_for(lambda: link_name(link), timeout_s)
    if address is None:
        raise _StepFailed(f"VF {step.vf_index} did not appear under {step.pf_address}")
    if step.vf_address is not None and address != step.vf_address:
        raise _StepFailed(f"VF {step.vf_index} is now {address}, the plan expected {step.vf_address}: re-run")
    return address


def _vf_netdev(sysfs: Sysfs, address: str, timeout_s: float) -> str:
    net = os.path.join(sysfs.pci_device_dir(address), "net")
    names = _wait_for(lambda: list_dir(net) or None, timeout_s)
    if not names:
        raise _StepFailed(f"VF {address} has no network interface")
    return names[0]


def _wait_for(probe: Callable[[], _T | None], timeout_s: float) -> _T | None:
    # VFs and their netdevs appear as the kernel probes them; on a real node that is
    # usually done when the sysfs write returns, but not guaranteed (async probing)
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None or time.monotonic() >= deadline:
            return value
        time.sleep(0.05)


def _kernel_reason(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"the kernel refused: {exc.strerror or exc}" + (f" ({name})" if name else "")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class SysfsProvisioner:
    """The real port: plain writes to the kernel's sysfs files under `sysfs.root`."""

    sysfs: Sysfs

    def set_num_vfs(self, pf_address: str, num_vfs: int) -> None:
        _write(os.path.join(self.sysfs.pci_device_dir(pf_address), "sriov_numvfs"), str(num_vfs))

    def bind_driver(self, pci_address: str, driver: str | None) -> None:
        device = self.sysfs.pci_device_dir(pci_address)
        # driver_override pins the device to `driver` for the probe below; an empty write clears
        # it, so the probe picks the device's own driver again (the one it had before vfio-pci)
        _write(os.path.join(device, "driver_override"), driver or "\n")
        if os.path.exists(os.path.join(device, "driver")):
            _write(os.path.join(device, "driver", "unbind"), pci_address)
        _write(os.path.join(self.sysfs.sys, "bus", "pci", "drivers_probe"), pci_address)

    def set_mtu(self, netdev: str, mtu: int) -> None:
        _write(os.path.join(self.sysfs.net_class_dir(netdev), "mtu"), str(mtu))
