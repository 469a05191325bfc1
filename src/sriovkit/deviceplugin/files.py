"""Files the device plugin leaves for others: device-info files and CDI specs.

Both are written atomically (`sriovkit.atomicfile`) so a reader (Multus, the
container runtime) never sees half a document, and not fsynced (`durable=False`): they live under
/var/run, which a reboot empties, and the agent writes them all anew when a pool starts, so a
power cut cannot leave a stale one that matters. An fsync each made the start-up pass over a
1024-VF pool take seconds on a disk-backed /run, and an Allocate arriving meanwhile wrote its
device's file itself at two fsyncs' cost (1.3-1.6 ms Allocate mean instead of 0.5).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from sriovkit import atomicfile
from sriovkit.deviceplugin.payload import (
    DEVICE_INFO_SUFFIX,
    DevicePayload,
    cdi_spec,
    device_info,
    device_info_file_name,
    device_info_file_prefix,
)
from sriovkit.resources.config import ResourceConfig
from sriovkit.resources.selectors import Device, device_id

_DEVINFO_SUFFIX = DEVICE_INFO_SUFFIX


def _json_text(document: object) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_json_atomic(path: Path, document: object) -> None:
    """The document as readable JSON (mode 0644: Multus and the runtime read it), whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomicfile.replace(path, _json_text(document).encode(), mode=0o644, durable=False)


def write_device_info(directory: Path, resource: ResourceConfig,
                      devices: Iterable[tuple[Device, DevicePayload | None]]) -> None:
    """Write each device's file unless it already says the same (Allocate is on the
    pod start path; comparing a small file is cheaper than replacing it)."""
    for dev, payload in devices:
        path = directory / device_info_file_name(resource, device_id(dev))
        document = device_info(dev, payload)
        if document is None:
            continue
        try:
            if path.read_text() == _json_text(document):
                continue
        except OSError:
            pass
        write_json_atomic(path, document)


def remove_device_info(directory: Path, resource: ResourceConfig, keep: Iterable[str] = ()) -> list[str]:
    """Remove this resource's device-info files except those for `keep`; returns the removed IDs."""
    prefix = device_info_file_prefix(resource)
    kept = set(keep)
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_DEVINFO_SUFFIX)):
            continue
        dev_id = name[len(prefix): -len(_DEVINFO_SUFFIX)]
        if dev_id not in kept:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / name)
            removed.append(dev_id)
    return removed


def cdi_spec_path(directory: Path, resource: ResourceConfig) -> Path:
    return directory / f"sriovkit-{resource.resource_prefix}-{resource.resource_name}.json"


def write_cdi_spec(directory: Path, resource: ResourceConfig, payloads: Iterable[DevicePayload]) -> None:
    write_json_atomic(cdi_spec_path(directory, resource), cdi_spec(resource, payloads))


def remove_cdi_spec(directory: Path, resource: ResourceConfig) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(cdi_spec_path(directory, resource))
