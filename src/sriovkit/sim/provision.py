"""`SimulatedProvisioner`: the `Provisioner` port on a simulated host tree.

It makes the changes `SysfsProvisioner` makes on a real node (VF count, driver binding, MTU) to a
`SimulatedHost`, refusing what the kernel refuses (a count above sriov_totalvfs, a non-zero to
non-zero count change, a driver that is not loaded), so plans are tested alike.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from sriovkit.host.model import VFIO_DRIVER
from sriovkit.host.statefile import locked
from sriovkit.sim import net as simnet
from sriovkit.sim.host import SimulatedHost


@dataclass(frozen=True, slots=True)
class SimulatedProvisioner:
    """The same port on a simulated host, refusing what the kernel refuses."""

    host: SimulatedHost

    def set_num_vfs(self, pf_address: str, num_vfs: int) -> None:
        number = self._pf_number(pf_address)
        pf = self.host.spec.pfs[number]
        if num_vfs > pf.total_vfs:
            raise OSError(errno.ERANGE, os.strerror(errno.ERANGE))
        if num_vfs == pf.num_vfs:
            return  # the kernel takes the same count as done
        if pf.num_vfs and num_vfs:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        pf.vf_drivers = {}  # VFs the kernel creates come up with their default driver
        switch_state = self.host.root / "eswitch" / f"{pf.name}.json"
        if switch_state.exists():  # the switch forgets the old VFs' settings: the kernel's new VFs have none
            with locked(switch_state.with_suffix(".lock")):
                switch_state.unlink(missing_ok=True)
        if not simnet.has_network(self.host):
            self.host.set_num_vfs(number, num_vfs)
            return
        with simnet.tree_lock(self.host):  # VFs with interfaces: the new ones get theirs, the old lose them
            self.host.set_num_vfs(number, num_vfs)
            simnet.SimNetwork.of(self.host).follow_tree()

    def bind_driver(self, pci_address: str, driver: str | None) -> None:
        number, index = self._vf(pci_address)
        pf = self.host.spec.pfs[number]
        if driver is not None and not os.path.isdir(self.host.root / "sys/bus/pci/drivers" / driver):
            raise OSError(errno.ENODEV, f"no driver {driver} loaded")
        bound = driver or pf.vf_driver
        self.host.bind_driver(pci_address, bound)
        has_netdev = bound not in (VFIO_DRIVER, "igb_uio", "uio_pci_generic")
        self.host.set_netdev(pci_address, self.host.vf_netdev_name(number, index) if has_netdev else None)

    def set_mtu(self, netdev: str, mtu: int) -> None:
        path = self.host.root / "sys/class/net" / netdev / "mtu"
        if not path.parent.exists():
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        path.write_text(f"{mtu}\n")

    def _pf_number(self, pf_address: str) -> int:
        for number in range(len(self.host.spec.pfs)):
            if self.host.pf_address(number) == pf_address:
                return number
        raise OSError(errno.ENODEV, f"no PF {pf_address}")

    def _vf(self, pci_address: str) -> tuple[int, int]:
        for dev in self.host.devices():
            if dev.pci_address == pci_address and dev.pf_address is not None and dev.vf_index is not None:
                return self._pf_number(dev.pf_address), dev.vf_index
        raise OSError(errno.ENODEV, f"no VF {pci_address}")
