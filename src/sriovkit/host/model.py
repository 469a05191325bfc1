"""What discovery found on a node: frozen values, no I/O.

One term per concept: a PCI function is identified by its `pci_address`
(``0000:3b:02.4``); its network interface by `netdev`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

VFIO_DRIVER = "vfio-pci"
UIO_DRIVERS = frozenset({"igb_uio", "uio_pci_generic"})
USERSPACE_DRIVERS = frozenset({VFIO_DRIVER}) | UIO_DRIVERS

NETWORK_CLASS_PREFIX = "02"
ACCELERATOR_CLASS_PREFIX = "12"

# ARPHRD_* values from class/net/<if>/type mapped to upstream's link type names
LINK_TYPES = {1: "ether", 32: "infiniband", 772: "loopback"}


@dataclass(frozen=True, slots=True)
class PciDevice:
    """One PCI function (PF, VF or a plain device) as the kernel shows it."""

    pci_address: str
    vendor: str  # 4 lowercase hex digits, no 0x
    device: str
    class_code: str  # 6 lowercase hex digits, e.g. 020000
    subsystem_vendor: str = ""
    subsystem_device: str = ""
    driver: str | None = None
    numa_node: int | None = None  # None where the kernel says -1 or nothing
    iommu_group: str | None = None
    acpi_index: str | None = None
    netdevs: tuple[str, ...] = ()
    link_type: str | None = None
    rdma_devices: tuple[str, ...] = ()
    rdma_char_devices: tuple[str, ...] = ()  # names under /dev/infiniband (uverbs0, umad0, issm0)
    uio_devices: tuple[str, ...] = ()  # uio0 ...
    pkeys: tuple[str, ...] = ()
    vdpa_type: str | None = None  # "vhost" | "virtio"
    ddp_profile: str | None = None
    # SR-IOV capability (PF side); total_vfs is None for a function that cannot have VFs
    total_vfs: int | None = None
    num_vfs: int = 0
    vf_addresses: tuple[str, ...] = ()  # ordered by VF index (virtfnN)
    # SR-IOV identity (VF side)
    pf_address: str | None = None
    vf_index: int | None = None
    pf_netdev: str | None = None  # the PF's interface name: what `pfNames` matches

    @property
    def is_vf(self) -> bool:
        return self.pf_address is not None

    @property
    def is_sriov_pf(self) -> bool:
        return self.total_vfs is not None

    @property
    def has_vfs(self) -> bool:
        return self.num_vfs > 0

    @property
    def netdev(self) -> str | None:
        return self.netdevs[0] if self.netdevs else None

    @property
    def is_network(self) -> bool:
        return self.class_code.startswith(NETWORK_CLASS_PREFIX)

    @property
    def is_accelerator(self) -> bool:
        return self.class_code.startswith(ACCELERATOR_CLASS_PREFIX)

    @property
    def is_rdma(self) -> bool:
        return bool(self.rdma_devices)

    @property
    def uses_vfio(self) -> bool:
        return self.driver == VFIO_DRIVER

    @property
    def uses_uio(self) -> bool:
        return self.driver in UIO_DRIVERS

    @property
    def vfio_group_device(self) -> str | None:
        if self.uses_vfio and self.iommu_group is not None:
            return f"/dev/vfio/{self.iommu_group}"
        return None

    @property
    def pf_name(self) -> str | None:
        """The name `pfNames` selects by: the PF's interface for a VF, else its own."""
        return self.pf_netdev if self.is_vf else self.netdev

    @property
    def root_device(self) -> str:
        """The address `rootDevices` selects by: the PF's for a VF, else its own."""
        return self.pf_address if self.pf_address is not None else self.pci_address


@dataclass(frozen=True, slots=True)
class AuxDevice:
    """An auxiliary-bus device (e.g. a Mellanox scalable function) under a PCI parent."""

    name: str  # e.g. mlx5_core.sf.4
    aux_type: str  # the middle part: sf, eth, rdma ...
    parent_address: str
    netdevs: tuple[str, ...] = ()
    link_type: str | None = None
    rdma_devices: tuple[str, ...] = ()
    rdma_char_devices: tuple[str, ...] = ()
    pf_netdev: str | None = None

    @property
    def netdev(self) -> str | None:
        return self.netdevs[0] if self.netdevs else None


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """Everything discovery found, keyed by PCI address in address order."""

    devices: dict[str, PciDevice] = field(default_factory=dict)
    aux_devices: dict[str, AuxDevice] = field(default_factory=dict)
    vhost_net: bool = False  # /dev/vhost-net and /dev/net/tun present

    def __iter__(self) -> Iterator[PciDevice]:
        return iter(self.devices.values())

    def get(self, pci_address: str) -> PciDevice | None:
        return self.devices.get(pci_address)

    def physical_functions(self) -> list[PciDevice]:
        return [d for d in self.devices.values() if d.is_sriov_pf]

    def virtual_functions(self, pf: PciDevice) -> list[PciDevice]:
        return [self.devices[a] for a in pf.vf_addresses if a in self.devices]
