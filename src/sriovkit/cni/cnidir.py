"""The seeds' per-namespace record: ``<cniDir>/<netns name>/<ifname>.json``, so a container that
mounts its own directory reads which VF it got (and only its own).

`cniDir` comes from a NAD, so it is a caller's path and gets the rules of every caller path: it is
used only when it is one of the node's published roots or inside one (the CNI state dir, the seeds'
default ``/var/lib/cni/sriov``, and whatever the node adds), otherwise nothing is written (a
warning says so). Every step goes from a descriptor of the root: no component is followed through
a symlink, the namespace directory is made or opened in place, the file is written under a temp
name created exclusively and linked into place (a name already there is never replaced), and
removal takes away only a regular file that holds this attachment's record, and the namespace
directory only when this attachment created it and it is empty.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sriovkit import atomicfile
from sriovkit.cni import paths
from sriovkit.cni.spec import CniError, ErrorCode
from sriovkit.cni.state import AttachmentRecord, CniFileTarget

if TYPE_CHECKING:
    from sriovkit.cni.steps import Call

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,254}$")
_PROC_NETNS = re.compile(r"^/proc/(\d+)/(?:task/\d+/)?ns/net$")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
RESERVED = ("locks",)  # the state dir's own directory, when cniDir is the state dir (the default)


def netns_name(netns: str) -> str | None:
    """The namespace's name from CNI_NETNS: its basename (/var/run/netns/<name>), or the process
    for /proc/<pid>/ns/net; None when that is no plain directory name."""
    m = _PROC_NETNS.match(netns)
    name = f"pid-{m.group(1)}" if m else os.path.basename(netns.rstrip("/"))
    return name if _NAME.fullmatch(name) and name not in RESERVED else None


def inside(roots: Sequence[str], cni_dir: str) -> tuple[str, list[str]] | None:
    """(root, components below it) when `cni_dir` is a root or inside one."""
    target = os.path.normpath(cni_dir)
    for root in roots:
        base = os.path.normpath(root)
        if target == base:
            return base, []
        if target.startswith(base.rstrip("/") + "/"):
            return base, [p for p in target[len(base):].split("/") if p]
    return None


def document(record: AttachmentRecord) -> dict[str, Any]:
    """What a container may read about its attachment (the record's public part)."""
    return {"containerID": record.container_id, "ifname": record.ifname, "netns": record.netns,
            "network": record.network, "pciAddress": record.pci_address, "mode": record.mode,
            "pfName": record.pf_netdev, "vfIndex": record.vf_index, "driver": record.bound_driver
            or record.original.driver, "mac": record.pod_mac, "ips": list(record.ips)}


def publish(root: str, parts: Sequence[str], ns_name: str, ifname: str, doc: dict[str, Any]) -> bool:
    """Write the file; True when the namespace directory was created for it. Raises CniError."""
    with _open_dirs(root, parts, create=True) as base:
        created = _make_dir(base, ns_name)
        try:
            with _opened(_open_ns_dir(base, ns_name, os.path.join(root, *parts))) as ns_fd:
                _write_new(ns_fd, f"{ifname}.json", json.dumps(doc, sort_keys=True, indent=2) + "\n")
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    os.rmdir(ns_name, dir_fd=base)
            raise
        return created


def withdraw(root: str, parts: Sequence[str], ns_name: str, ifname: str, container_id: str,
             dir_created: bool) -> None:
    """Remove the file if it is ours (this attachment's record), then an empty directory we made."""
    try:
        with _open_dirs(root, parts, create=False) as base:
            with _opened(os.open(ns_name, _DIR_FLAGS, dir_fd=base)) as ns_fd:
                name = f"{ifname}.json"
                if _holds(ns_fd, name, container_id, ifname):
                    os.unlink(name, dir_fd=ns_fd)
            if dir_created:
                with contextlib.suppress(OSError):  # not empty: someone else's files stay
                    os.rmdir(ns_name, dir_fd=base)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CniError(ErrorCode.IO_FAILURE, f"cannot remove {os.path.join(root, *parts, ns_name, ifname)}.json",
                       exc.strerror or str(exc)) from None


@contextlib.contextmanager
def _opened(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _open_dirs(root: str, parts: Sequence[str], *, create: bool) -> Iterator[int]:
    """A descriptor of root/parts..., each component opened without following a symlink."""
    try:
        if create:  # the node's own directory (its path is the node's configuration, not a NAD's)
            os.makedirs(root, 0o755, exist_ok=True)
        fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and not create:
            raise
        raise CniError(ErrorCode.IO_FAILURE, f"cniDir root {root} is unusable", exc.strerror or str(exc)) from None
    try:
        below = paths.open_below(fd, parts, create=create)  # FileNotFoundError when not `create`
    except paths.ComponentError as exc:
        where = os.path.join(root, *parts[:exc.index + 1])
        raise CniError(ErrorCode.IO_FAILURE, f"cniDir {where} is not a plain directory",
                       exc.error.strerror or str(exc.error)) from None
    finally:
        os.close(fd)
    with _opened(below):
        yield below


def _open_ns_dir(base: int, ns_name: str, where: str) -> int:
    try:
        return os.open(ns_name, _DIR_FLAGS, dir_fd=base)
    except OSError as exc:
        raise CniError(ErrorCode.IO_FAILURE, f"cniDir {os.path.join(where, ns_name)} is not a plain directory",
                       exc.strerror or str(exc)) from None


def _make_dir(parent: int, name: str) -> bool:
    try:
        os.mkdir(name, 0o755, dir_fd=parent)  # readable: containers mount it to read their records
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        raise CniError(ErrorCode.IO_FAILURE, f"cannot create cniDir directory {name}",
                       exc.strerror or str(exc)) from None


def _write_new(dir_fd: int, name: str, text: str) -> None:
    # not fsynced: what it tells a container goes with the container at a power loss, and the
    # journal (durable) is what a DEL after a crash goes by, removing only a file that is ours
    if atomicfile.create_new_at(dir_fd, name, text.encode(), mode=0o644, durable=False) is None:
        raise CniError(ErrorCode.IO_FAILURE, f"cniDir file {name} already exists",
                       "another attachment's record, or one left behind; not replaced")


def _holds(dir_fd: int, name: str, container_id: str, ifname: str) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except (FileNotFoundError, OSError):
        return False
    with _opened(fd):
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size > 1 << 16:
            return False
        try:
            data = json.loads(os.read(fd, 1 << 16))
        except ValueError:
            return False
    return isinstance(data, dict) and (data.get("containerID"), data.get("ifname")) == (container_id, ifname)


# -- the steps ADD and DEL run ---------------------------------------------------------------
def plan(call: Call, roots: Sequence[str]) -> CniFileTarget | None:
    """Where this attachment's file goes (kept in the journal, so a DEL after a crash finds it),
    or None with a warning when cniDir is not the node's to write."""
    cni_dir = call.conf.cni_dir or call.ctx.state_dir
    where = inside(roots, cni_dir)
    if where is None:
        call.log.warning("cniDir is outside the node's directories: the per-namespace record is not written",
                         cni_dir=cni_dir, allowed=",".join(roots))
        return None
    ns = netns_name(call.env.netns)
    if ns is None:
        call.log.warning("CNI_NETNS gives no usable namespace name: the per-namespace record is not written",
                         netns=call.env.netns)
        return None
    # decided before the journal is written, so a DEL after a crash mid-ADD removes the directory
    # too; it is only ever removed empty, so a sibling attachment's directory is safe either way
    made = not os.path.lexists(os.path.join(where[0], *where[1], ns))
    return {"root": where[0], "parts": where[1], "netns": ns, "ifname": call.env.ifname, "dir_created": made}


def publish_record(record: AttachmentRecord) -> None:
    target = record.cni_file
    if target is None:
        raise ValueError(f"attachment {record.key}: no per-namespace record planned")
    made = publish(target["root"], target["parts"], target["netns"], target["ifname"], document(record))
    target["dir_created"] = target["dir_created"] or made


def withdraw_record(record: AttachmentRecord) -> None:
    target = record.cni_file
    if target:
        withdraw(target["root"], target["parts"], target["netns"], target["ifname"], record.container_id,
                 bool(target.get("dir_created")))
