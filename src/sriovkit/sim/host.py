"""Simulated hosts: a fake sysfs/dev tree built from a small declarative topology.

The tree looks like the kernel's where discovery looks: devices under
``sys/devices/pci0000:00/...``, ``sys/bus/pci/devices`` and
``sys/bus/pci/drivers/<drv>`` links, ``physfn``/``virtfnN`` links, ``class/net``
links, ``uevent`` files, iommu groups, RDMA and uio entries, device nodes under
``dev/``. It is what tests, the demo and benchmarks run on.

The device nodes are character devices with /dev/null's numbers (1:3) where the process that
creates the host may make them (CAP_MKNOD: the real-node tests, the demo as root), and plain files
otherwise. A container runtime handed one through CDI or the device plugin API needs a real device
node to create the container's (containerd stats it for its type and numbers); 1:3 makes the
container's node harmless. A node the simulator makes later (a VF bound to vfio-pci by the agent,
which runs without CAP_MKNOD) is a hard link to ``dev/.sim-chardev``, the one node made at create.

Netdev names in the tree may be the names of real interfaces (veths) that a
caller creates separately; the tree only records names.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from sriovkit import gojson
from sriovkit.errors import SriovkitError
from sriovkit.host.model import VFIO_DRIVER
from sriovkit.host.sysfs import Sysfs
from sriovkit.pciaddr import function_number
from sriovkit.sim.marker import SIM_MARKER
from sriovkit.sim.marker import is_simulated as is_simulated

_MARKER = SIM_MARKER
_DEV_LINK_BASE = os.path.join("sys", "devices", "pci0000:00")
_ARPHRD = {"ether": 1, "infiniband": 32}
_CHAR_TEMPLATE = ".sim-chardev"  # under dev/: the simulator's char device (/dev/null's numbers)
_NULL_DEV = (1, 3)
VfSettingName = Literal["mac", "vlan", "vlanProto", "spoofchk", "trust", "linkState", "minTxRate", "maxTxRate"]


class SimSpecError(SriovkitError, ValueError):
    """A simulated host spec that cannot be built; `problems`: one line per problem, each naming
    file, field and value."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SimPF(_Model):
    """One physical function and its VFs."""

    name: str = Field(min_length=1, max_length=15)
    address: str | None = None
    vendor: str = "8086"
    device: str = "1592"
    vf_device: str = "1889"
    class_code: str | None = None  # default: 020000, or 020700 for infiniband
    driver: str = "ice"
    vf_driver: str = "iavf"
    vf_drivers: dict[str, str] = Field(default_factory=dict)  # "0-1" / "3" -> driver
    numa_node: int = 0
    link_type: Literal["ether", "infiniband"] = "ether"
    total_vfs: int = Field(default=64, ge=0, le=256)
    num_vfs: int = Field(default=4, ge=0, le=256)
    rdma: bool = False
    vdpa: Literal["vhost", "virtio"] | None = None
    acpi_index: int | None = None
    pkeys: list[str] = Field(default_factory=list)
    vf_netdev_format: str = "{pf}v{index}"
    mac_prefix: str | None = None
    # PF-side VF settings this NIC refuses (EOPNOTSUPP), like a driver lacking the knob.
    unsupported_vf_settings: list[VfSettingName] = Field(default_factory=list)

    @field_validator("vendor", "device", "vf_device")
    @classmethod
    def _hex4(cls, value: str) -> str:
        v = value.lower().removeprefix("0x")
        if len(v) != 4 or any(c not in "0123456789abcdef" for c in v):
            raise ValueError(f"must be 4 hex digits, got {value!r}")
        return v


class SimSpec(_Model):
    """A whole simulated node."""

    pfs: list[SimPF] = Field(default_factory=list)
    vhost_net: bool = True
    # PCI drivers loaded with no device bound yet (e.g. vfio-pci before provisioning binds a VF)
    loaded_drivers: list[str] = Field(default_factory=list)


def load_spec(path: str | Path) -> SimSpec:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SimSpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        if str(path).endswith((".yaml", ".yml")):
            data = yaml.safe_load(raw.decode("utf-8", "replace"))
        else:  # read as every JSON input is (sriovkit.gojson): deep nesting, NaN, bad bytes are one clear error
            data = gojson.plain(gojson.parse(raw).value)
        return SimSpec.model_validate(data)
    except (ValueError, yaml.YAMLError) as exc:
        raise SimSpecError(_spec_error_lines(path, exc)) from None
    except RecursionError:  # YAML nested deeper than its parser recurses
        raise SimSpecError(f"{path}: nested too deep") from None


def _spec_error_lines(path: str | Path, exc: Exception) -> list[str]:
    if isinstance(exc, ValidationError):
        lines = []
        for err in exc.errors():
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
            lines.append(f"{path}: {loc.lstrip('.')}: {err['msg']} (value: {json.dumps(err.get('input'))})")
        return lines
    return [f"{path}: {exc}"]


@dataclass(frozen=True, slots=True)
class SimDevice:
    """A device the simulator created: what the caller needs to find it again."""

    pci_address: str
    netdev: str | None
    pf_address: str | None = None
    vf_index: int | None = None


class SimulatedHost:
    """A fake node under `root`. Construction only stores; `create()` writes the tree."""

    def __init__(self, root: str | Path, spec: SimSpec) -> None:
        self.root = Path(root)
        self.spec = spec
        self._iommu_next = 10
        self.network_id: str | None = None  # what its veths are named by, once read (sriovkit.sim.net)
        self._marker_stamp: tuple[int, int, int] | None = None  # the marker file this spec was read from

    # -- lifecycle ---------------------------------------------------------------
    def create(self) -> SimulatedHost:
        if self.root.exists() and any(self.root.iterdir()) and not (self.root / _MARKER).exists():
            raise SimSpecError(f"{self.root}: exists and is not a simulated host; refusing to write into it")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / _MARKER).write_text(self.spec.model_dump_json(by_alias=True))
        for sub in ("sys/bus/pci/devices", "sys/bus/pci/drivers", "sys/class/net", "sys/kernel/iommu_groups"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for driver in self.spec.loaded_drivers:
            (self.root / "sys/bus/pci/drivers" / driver).mkdir(parents=True, exist_ok=True)
        self._make_dev_nodes()
        for number, pf in enumerate(self.spec.pfs):
            self._make_pf(number, pf)
        self._marker_stamp = _stamp(self.root / _MARKER)
        return self

    def destroy(self) -> None:
        destroy(self.root)

    # -- queries -------------------------------------------------------------------
    def pf_address(self, number: int) -> str:
        pf = self.spec.pfs[number]
        return pf.address or f"0000:{0x10 + 2 * number:02x}:00.0"

    def vf_address(self, pf_number: int, index: int) -> str:
        bus = int(self.pf_address(pf_number).split(":")[1], 16) + 1
        return f"0000:{bus:02x}:{index // 8:02x}.{index % 8}"

    def vf_netdev_name(self, pf_number: int, index: int) -> str:
        pf = self.spec.pfs[pf_number]
        return pf.vf_netdev_format.format(pf=pf.name, index=index, pf_number=pf_number)

    def devices(self) -> Iterator[SimDevice]:
        for number, pf in enumerate(self.spec.pfs):
            pf_addr = self.pf_address(number)
            yield SimDevice(pf_addr, pf.name)
            for index in range(pf.num_vfs):
                driver = self.vf_driver(pf, index)
                netdev = self.vf_netdev_name(number, index) if _has_netdev(driver) else None
                yield SimDevice(self.vf_address(number, index), netdev, pf_addr, index)

    def pf_number(self, netdev: str) -> int | None:
        """The PF whose interface is `netdev` (its spec name), if any."""
        return next((n for n, pf in enumerate(self.spec.pfs) if pf.name == netdev), None)

    def vf_driver(self, pf: SimPF, index: int) -> str:
        for ranges, driver in pf.vf_drivers.items():
            if index in _expand_ranges(ranges):
                return driver
        return pf.vf_driver

    # -- mutations a test or the demo makes ----------------------------------------
    def set_num_vfs(self, pf_number: int, num_vfs: int) -> None:
        """Like writing sriov_numvfs: VFs above the new count vanish, new ones appear."""
        pf = self.spec.pfs[pf_number]
        for index in range(pf.num_vfs):
            self._remove_device(self.vf_address(pf_number, index))
            _unlink(self._dev_path(self.pf_address(pf_number)) / f"virtfn{index}")
        pf.num_vfs = num_vfs
        self._write(self._dev_path(self.pf_address(pf_number)) / "sriov_numvfs", str(num_vfs))
        self._make_vfs(pf_number, pf)
        self._save_spec()

    def refresh(self) -> None:
        """Take up the spec as the tree now has it, when another process changed it (a VF count
        written through the provisioner): a long-lived handle, like the kernel, sees today's VFs.
        One stat when nothing changed."""
        marker = self.root / _MARKER
        try:
            stamp = _stamp(marker)
            if stamp == self._marker_stamp:
                return
            spec = SimSpec.model_validate_json(marker.read_text())
        except (OSError, ValueError):
            return  # gone (destroyed) or not ours: keep what was read
        self.spec, self._marker_stamp = spec, stamp

    def _save_spec(self) -> None:
        """The spec into the marker, whole (readers in other processes never see half of it)."""
        marker = self.root / _MARKER
        tmp = marker.with_name(f".{_MARKER}.{os.getpid()}.tmp")
        tmp.write_text(self.spec.model_dump_json(by_alias=True))
        os.replace(tmp, marker)
        self._marker_stamp = _stamp(marker)

    def set_netdev(self, pci_address: str, netdev: str | None) -> None:
        """Show the device's interface under a new name, or none (moved to a pod)."""
        device_dir = self._dev_path(pci_address)
        net = device_dir / "net"
        for old in list(net.iterdir()) if net.exists() else []:
            _unlink(self.root / "sys/class/net" / old.name)
            shutil.rmtree(old)
        if netdev is not None:
            self._make_netdev(device_dir, netdev, "ether")

    def bind_driver(self, pci_address: str, driver: str | None) -> None:
        """Rebind like driver_override + drivers_probe; None unbinds."""
        device_dir = self._dev_path(pci_address)
        old = os.path.basename(os.readlink(device_dir / "driver")) if (device_dir / "driver").is_symlink() else None
        if old is not None:
            _unlink(device_dir / "driver")
            _unlink(self.root / "sys/bus/pci/drivers" / old / pci_address)
        if driver is not None:
            self._link_driver(device_dir, pci_address, driver)
        self._rewrite_uevent_driver(device_dir, driver)

    # -- tree building -------------------------------------------------------------
    def _dev_path(self, pci_address: str) -> Path:
        return self.root / _DEV_LINK_BASE / pci_address

    def _make_dev_nodes(self) -> None:
        dev = self.root / "dev"
        (dev / "vfio").mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):  # no CAP_MKNOD: every node is a plain file
            os.mknod(dev / _CHAR_TEMPLATE, 0o666 | stat.S_IFCHR, os.makedev(*_NULL_DEV))
        self._make_node(dev / "vfio" / "vfio")
        (dev / "infiniband").mkdir(exist_ok=True)
        if self.spec.vhost_net:
            (dev / "net").mkdir(exist_ok=True)
            self._make_node(dev / "vhost-net")
            self._make_node(dev / "net" / "tun")
        if any(pf.rdma for pf in self.spec.pfs):
            self._make_node(dev / "infiniband" / "rdma_cm")

    def _make_node(self, path: Path) -> None:
        """A device node: a link to the simulator's char device if there is one, else a plain file."""
        if path.exists():
            return
        try:
            os.link(self.root / "dev" / _CHAR_TEMPLATE, path)
        except OSError:  # none made at create (no CAP_MKNOD), or links refused here
            path.touch()

    def _make_pf(self, number: int, pf: SimPF) -> None:
        address = self.pf_address(number)
        class_code = pf.class_code or ("020700" if pf.link_type == "infiniband" else "020000")
        path = self._make_function(address, pf.vendor, pf.device, class_code, pf.driver, pf.numa_node)
        self._write(path / "sriov_totalvfs", str(pf.total_vfs))
        self._write(path / "sriov_numvfs", str(pf.num_vfs))
        # vf_address's numbering as a NIC's SR-IOV capability states it (VF n is n functions after
        # VF 0), where it is one: a PF given an address in another domain than its VFs' has none
        pf_function, vf0_function = function_number(address), function_number(self.vf_address(number, 0))
        if pf_function is not None and vf0_function is not None and pf_function >> 16 == vf0_function >> 16:
            self._write(path / "sriov_offset", str(vf0_function - pf_function))
            self._write(path / "sriov_stride", "1")
        if pf.acpi_index is not None:
            self._write(path / "acpi_index", str(pf.acpi_index))
        self._make_netdev(path, pf.name, pf.link_type)
        if pf.rdma:
            self._make_rdma(path, f"mlx5_{number * 1000}", number * 1000, pf.pkeys)
        self._make_vfs(number, pf)

    def _make_vfs(self, number: int, pf: SimPF) -> None:
        pf_addr = self.pf_address(number)
        pf_path = self._dev_path(pf_addr)
        class_code = pf.class_code or ("020700" if pf.link_type == "infiniband" else "020000")
        for index in range(pf.num_vfs):
            address = self.vf_address(number, index)
            driver = self.vf_driver(pf, index)
            path = self._make_function(address, pf.vendor, pf.vf_device, class_code, driver, pf.numa_node)
            os.symlink(f"../{pf_addr}", path / "physfn")
            os.symlink(f"../{address}", pf_path / f"virtfn{index}")
            if _has_netdev(driver):
                self._make_netdev(path, self.vf_netdev_name(number, index), pf.link_type)
            if driver in ("igb_uio", "uio_pci_generic"):
                self._make_uio(path)
            if pf.rdma and _has_netdev(driver):
                self._make_rdma(path, f"mlx5_{number * 1000 + index + 1}", number * 1000 + index + 1, pf.pkeys)
            if pf.vdpa is not None:
                self._make_vdpa(path, index + number * 256, pf.vdpa)

    def _make_function(
        self, address: str, vendor: str, device: str, class_code: str, driver: str | None, numa: int
    ) -> Path:
        path = self._dev_path(address)
        path.mkdir(parents=True)
        self._write(path / "vendor", f"0x{vendor}")
        self._write(path / "device", f"0x{device}")
        self._write(path / "class", f"0x{class_code}")
        self._write(path / "subsystem_vendor", f"0x{vendor}")
        self._write(path / "subsystem_device", "0x0000")
        self._write(path / "numa_node", str(numa))
        self._write_uevent(path, address, vendor, device, class_code, driver)
        self._write(path / "modalias", _modalias(vendor, device, class_code))
        os.symlink(f"../../../devices/pci0000:00/{address}", self.root / "sys/bus/pci/devices" / address)
        if driver is not None:
            self._link_driver(path, address, driver)
        groups = self.root / "sys/kernel/iommu_groups"
        while (groups / str(self._iommu_next)).exists():  # a number another handle gave (counts lag removals)
            self._iommu_next += 1
        group = str(self._iommu_next)
        self._iommu_next += 1
        group_dir = groups / group / "devices"
        group_dir.mkdir(parents=True)
        os.symlink(f"../../../../devices/pci0000:00/{address}", group_dir / address)
        os.symlink(f"../../kernel/iommu_groups/{group}", path / "iommu_group")
        if driver == VFIO_DRIVER:
            self._make_node(self.root / "dev/vfio" / group)
        return path

    def _write_uevent(
        self, path: Path, address: str, vendor: str, device: str, class_code: str, driver: str | None
    ) -> None:
        lines = [f"DRIVER={driver}"] if driver else []
        lines += [
            f"PCI_CLASS={int(class_code, 16):X}",
            f"PCI_ID={vendor.upper()}:{device.upper()}",
            f"PCI_SUBSYS_ID={vendor.upper()}:0000",
            f"PCI_SLOT_NAME={address}",
            f"MODALIAS=pci:v0000{vendor.upper()}d0000{device.upper()}sv0000{vendor.upper()}sd00000000",
        ]
        self._write(path / "uevent", "\n".join(lines))

    def _rewrite_uevent_driver(self, path: Path, driver: str | None) -> None:
        lines = [ln for ln in (path / "uevent").read_text().splitlines() if not ln.startswith("DRIVER=")]
        if driver:
            lines.insert(0, f"DRIVER={driver}")
        self._write(path / "uevent", "\n".join(lines))
        group = os.path.basename(os.readlink(path / "iommu_group"))
        node = self.root / "dev/vfio" / group
        if driver == VFIO_DRIVER:
            self._make_node(node)
        else:
            _unlink(node)

    def _link_driver(self, path: Path, address: str, driver: str) -> None:
        drv_dir = self.root / "sys/bus/pci/drivers" / driver
        drv_dir.mkdir(parents=True, exist_ok=True)
        os.symlink(f"../../../../devices/pci0000:00/{address}", drv_dir / address)
        os.symlink(f"../../../bus/pci/drivers/{driver}", path / "driver")

    def _make_netdev(self, device_dir: Path, name: str, link_type: str) -> None:
        net = device_dir / "net" / name
        net.mkdir(parents=True)
        self._write(net / "type", str(_ARPHRD[link_type]))
        self._write(net / "operstate", "up")
        rel = os.path.relpath(net, self.root / "sys/class/net")
        os.symlink(rel, self.root / "sys/class/net" / name)

    def _make_rdma(self, device_dir: Path, ibdev: str, number: int, pkeys: list[str]) -> None:
        pkey_dir = device_dir / "infiniband" / ibdev / "ports" / "1" / "pkeys"
        pkey_dir.mkdir(parents=True)
        for i, pkey in enumerate(pkeys or ["0xffff"]):
            self._write(pkey_dir / str(i), pkey)
        for sub, name in (("infiniband_verbs", f"uverbs{number}"), ("infiniband_mad", f"umad{number}"),
                          ("infiniband_mad", f"issm{number}")):
            (device_dir / sub / name).mkdir(parents=True)
            self._make_node(self.root / "dev/infiniband" / name)

    def _make_uio(self, device_dir: Path) -> None:
        existing = len(list((self.root / "dev").glob("uio*")))
        name = f"uio{existing}"
        (device_dir / "uio" / name).mkdir(parents=True)
        self._make_node(self.root / "dev" / name)

    def _make_vdpa(self, device_dir: Path, number: int, kind: str) -> None:
        driver = "vhost_vdpa" if kind == "vhost" else "virtio_vdpa"
        vdpa = device_dir / f"vdpa{number}"
        vdpa.mkdir()
        os.symlink(f"../../../../bus/vdpa/drivers/{driver}", vdpa / "driver")

    def _remove_device(self, address: str) -> None:
        path = self._dev_path(address)
        if not path.exists():
            return
        for name in os.listdir(path / "net") if (path / "net").exists() else []:
            _unlink(self.root / "sys/class/net" / name)
        if (path / "driver").is_symlink():
            _unlink(self.root / "sys/bus/pci/drivers" / os.path.basename(os.readlink(path / "driver")) / address)
        group = os.path.basename(os.readlink(path / "iommu_group"))
        shutil.rmtree(self.root / "sys/kernel/iommu_groups" / group)
        _unlink(self.root / "dev/vfio" / group)
        _unlink(self.root / "sys/bus/pci/devices" / address)
        shutil.rmtree(path)

    @staticmethod
    def _write(path: Path, text: str) -> None:
        path.write_text(text + "\n")


def create(root: str | Path, spec: SimSpec | dict[str, Any]) -> SimulatedHost:
    """Build a simulated host under `root` from a spec (model or plain dict)."""
    model = spec if isinstance(spec, SimSpec) else SimSpec.model_validate(spec)
    return SimulatedHost(root, model).create()


def open_existing(root: str | Path) -> SimulatedHost:
    """A handle on a tree made earlier (by another process, e.g. `sriovctl sim create`)."""
    marker = Path(root) / _MARKER
    if not marker.exists():
        raise SimSpecError(f"{root}: not a simulated host (no {_MARKER})")
    stamp = _stamp(marker)
    host = SimulatedHost(root, SimSpec.model_validate_json(marker.read_text()))
    host._marker_stamp = stamp
    host._iommu_next = 10 + sum(1 for _ in host.devices())
    return host


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


def destroy(root: str | Path) -> None:
    """Remove a simulated host tree; refuses a directory the simulator did not make."""
    path = Path(root)
    if not path.exists():
        return
    if not (path / _MARKER).exists():
        raise SimSpecError(f"{path}: not a simulated host (no {_MARKER}); refusing to delete it")
    shutil.rmtree(path)


def _modalias(vendor: str, device: str, class_code: str) -> str:
    """The kernel's `modalias` of a PCI function (what ghw-based tools read to find devices)."""
    c = class_code.upper()
    return (f"pci:v0000{vendor.upper()}d0000{device.upper()}sv0000{vendor.upper()}sd00000000"
            f"bc{c[0:2]}sc{c[2:4]}i{c[4:6]}")


def _has_netdev(driver: str | None) -> bool:
    return driver not in (None, VFIO_DRIVER, "igb_uio", "uio_pci_generic")


def _expand_ranges(text: str) -> set[int]:
    result: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        result.update(range(int(lo), int(hi or lo) + 1))
    return result


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def set_operstate(sysfs: Sysfs, netdev: str, state: str) -> None:
    """Write an interface's operstate in a simulated host tree (a test or demo turning a PF's
    link down or up; the device plugin's health reads it). Never use on a real host's /sys."""
    path = os.path.join(sysfs.net_class_dir(netdev), "operstate")
    with open(path, "w") as f:
        f.write(state + "\n")
