"""What the kubelet may ask for: the checks on device IDs in Allocate and GetPreferredAllocation.

Pure. A request is refused (INVALID_ARGUMENT) when it names a device twice (a VF handed to a
container twice, or to two containers), a device the pool does not have, an ID longer than any
device ID we publish, or a preferred allocation the kubelet could not have meant (a must-include
device it does not offer, a size its offer cannot fill). Messages echo at most a short prefix of
an ID: a hostile megabyte-long ID must not come back in the status, where gRPC's metadata limit
would turn the answer into a transport error.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sriovkit.errors import SriovkitError

# Our IDs are PCI addresses (12 bytes) or auxiliary device names (a driver name and an index);
# the kubelet only ever sends IDs we published.
MAX_DEVICE_ID_BYTES = 256
SHOWN_ID_CHARS = 40


class DeviceRequestError(SriovkitError, ValueError):
    """The request is malformed or names devices we must not hand out: INVALID_ARGUMENT."""


def shown(value: str) -> str:
    """`value` as an error message may quote it: printable, at most SHOWN_ID_CHARS characters."""
    text = value if len(value) <= SHOWN_ID_CHARS else f"{value[:SHOWN_ID_CHARS]}... ({len(value)} characters)"
    return repr(text) if not text.isprintable() else text


def check_ids(ids: Sequence[str], known: Collection[str], *, field: str, resource: str,
              seen: set[str] | None = None) -> None:
    """Every ID at most MAX_DEVICE_ID_BYTES, named once (also across the lists that share `seen`),
    and one of `known`."""
    seen = set() if seen is None else seen
    for dev_id in ids:
        if len(dev_id.encode("utf-8", "surrogateescape")) > MAX_DEVICE_ID_BYTES:
            raise DeviceRequestError(f"{field}: device ID {shown(dev_id)} is longer than {MAX_DEVICE_ID_BYTES} bytes")
        if dev_id in seen:
            raise DeviceRequestError(f"{field}: device {shown(dev_id)} is named more than once")
        seen.add(dev_id)
        if dev_id not in known:
            raise DeviceRequestError(f"{field}: device {shown(dev_id)} is not in resource {resource}")


def check_allocate(containers: Sequence[Sequence[str]], known: Collection[str], resource: str) -> None:
    """An AllocateRequest: each container's devices_ids; no device twice, in one container or two."""
    seen: set[str] = set()
    for n, ids in enumerate(containers):
        if not ids:
            raise DeviceRequestError(f"container_requests[{n}].devices_ids: no device requested")
        check_ids(ids, known, field=f"container_requests[{n}].devices_ids", resource=resource, seen=seen)


def check_preferred(available: Sequence[str], must_include: Sequence[str], size: int, known: Collection[str],
                    resource: str, index: int = 0) -> None:
    """One ContainerPreferredAllocationRequest."""
    where = f"container_requests[{index}]"
    check_ids(available, known, field=f"{where}.available_deviceIDs", resource=resource)
    check_ids(must_include, known, field=f"{where}.must_include_deviceIDs", resource=resource)
    offered = set(available)
    for dev_id in must_include:
        if dev_id not in offered:
            raise DeviceRequestError(f"{where}.must_include_deviceIDs: device {shown(dev_id)} is not among "
                                     "available_deviceIDs")
    if not len(must_include) <= size <= len(available):
        raise DeviceRequestError(f"{where}.allocation_size {size}: must be between the {len(must_include)} "
                                 f"must-include and the {len(available)} available devices")
