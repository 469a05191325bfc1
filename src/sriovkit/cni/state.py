"""What DEL needs, kept on disk so it survives the plugin process and crashes.

Layout under the state dir (default ``/var/lib/cni/sriov``, mode 0700):

    <containerID>-<ifname>.json   one attachment's record (0600), written
                                  by `sriovkit.atomicfile`, so a crash leaves the
                                  old file or the new one, never half of one
    <containerID>-<ifname>.pending  the snapshot an ADD took before its first change
                                  (the journal); if the process dies mid-ADD, DEL
                                  restores from it. It stays beside the record
                                  until DEL (see "Durability" below)
    .tmp-<containerID>-<ifname>+<pci>.json|.pending  a write in progress, named
                                  per attachment and VF (written only under that
                                  VF's lock), so one left by a killed process is
                                  overwritten by the next write and removed by DEL
    .owner+<pci>+<containerID>-<ifname>  empty: which attachment holds the VF, so the
                                  "is this VF taken" check of every ADD reads one
                                  record, not each (a node with many attachments
                                  paid a read of all of them per ADD). Made before
                                  the journal, in the same directory: the journal's
                                  directory fsync makes it as durable. A record
                                  without one (written by an earlier version) is
                                  still found: those are read, as all were before
    locks/<pci address>.lock      per-VF flock: the node agent's threads and
                                  standalone plugin processes exclude each other
    locks/<containerID>-<ifname>.attach  per-attachment flock, taken first: a DEL
                                  waits for its own ADD still in progress; removed
                                  once the attachment has no record

Durability. The journal is the one durable write of an ADD: fsynced, renamed, and its
directory fsynced before the first change, so it survives a power cut as surely as a kill.
The committed record is written atomically (a temp file renamed over its name: a kill leaves
the old file or the new one) but not fsynced: it adds only what ADD learnt on the way (the pod's
MAC and ifindex, the addresses), and until DEL the journal beside it describes the same
attachment. After a power cut, a record that did not reach the disk whole (missing, empty or
torn) gives way to the journal; a DEL that follows restores from it as from an interrupted
ADD. DEL removes the record, the journal and any temp file, then fsyncs the directory once.

Symlinks inside the directory are refused: a file planted there must not make
us write or read somewhere else. A record is only ever used for the attachment
it names: ``a-b`` + ``c`` and ``a`` + ``b-c`` share a file name, and one's DEL
must never release the other's VF.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Container, Iterator
from dataclasses import dataclass, field, fields
from typing import NotRequired, TypedDict

from sriovkit import atomicfile, nodepaths
from sriovkit.cni.spec import CniError, ErrorCode

RECORD_FORMAT = 1
DEFAULT_STATE_DIR = nodepaths.CNI_STATE_DIR
_SUFFIX = ".json"
_PENDING = ".pending"
_ATTACHMENT_LOCK = ".attach"
_OWNER = ".owner+"
_POLL_S = 0.01


class VfSettingsRecord(TypedDict):
    """A VF's PF-side settings as a record keeps them (`vfconfig.settings_to_dict`): VfSettings'
    fields, its enums as their kernel numbers."""

    vf_index: int
    mac: str  # the administrative MAC (00:..:00 = none)
    vlan: int
    qos: int
    vlan_proto: NotRequired[int]  # ETH_P_8021Q / ETH_P_8021AD (absent: 802.1Q)
    spoofchk: bool
    trust: bool
    link_state: NotRequired[int]  # IFLA_VF_LINK_STATE_* (absent: auto)
    min_tx_rate: int
    max_tx_rate: int


class CniFileTarget(TypedDict):
    """Where the seeds' per-namespace record goes (`cnidir.plan`): `root`/`parts`/`netns`/`ifname`.json."""

    root: str  # one of the node's cniDir roots
    parts: list[str]  # the directories below it
    netns: str  # the namespace's name
    ifname: str
    dir_created: bool  # the namespace directory is this attachment's (DEL removes it once empty)


@dataclass(slots=True)
class OriginalState:
    """The VF as it was before ADD: what DEL puts back."""

    host_ifname: str | None = None
    mac: str | None = None
    mtu: int | None = None
    up: bool | None = None
    driver: str | None = None
    vf: VfSettingsRecord | None = None  # the PF-side settings (admin MAC, vlan, qos, proto, ...)
    ifindex: int | None = None  # the netdev's ifindex in the host namespace
    perm_mac: str | None = None  # its permanent (hardware) MAC, when the kernel reports one


@dataclass(slots=True)
class AttachmentRecord:
    container_id: str
    ifname: str
    netns: str
    network: str
    pci_address: str
    mode: str  # "netdev" | "userspace" | "pf"
    pf_netdev: str | None = None
    vf_index: int | None = None
    original: OriginalState = field(default_factory=OriginalState)
    changed_vf: list[str] = field(default_factory=list)  # PF-side settings ADD changed, in order
    pod_mac: str = ""
    pod_ifindex: int | None = None  # the VF's ifindex in the pod once moved there
    bound_driver: str | None = None  # a driver ADD bound; DEL rebinds original.driver
    device_info_file: str = ""
    device_info_created: list[int] | None = None  # identity of the file ADD created (DEL removes only it)
    device_info_root: str = ""  # the device-info directory the path was checked against at ADD
    device_info_fresh: bool = False  # no file was at the path when ADD checked it (a journal's file is ADD's)
    config: str = ""  # the ADD's network config, for IPAM DEL and GC
    ips: list[str] = field(default_factory=list)
    runtime_ifname: str = ""  # CNI_IFNAME, when the netconf's if0name named the interface instead
    cni_file: CniFileTarget | None = None  # the seeds' <cniDir>/<netns>/<ifname>.json (sriovkit.cni.cnidir)
    # ADD's CNI_PATH and CNI_ARGS: a DEL the runtime never sends (sriovkit.cni.forgotten) runs the
    # IPAM plugin's DEL with them, as the runtime's own DEL would
    cni_path: list[str] = field(default_factory=list)
    cni_args: str = ""
    complete: bool = True  # False: the journal of an ADD that may have stopped half-way
    format: int = RECORD_FORMAT

    @property
    def key(self) -> str:
        return f"{self.container_id}-{self.ifname}"

    def to_json(self) -> str:
        # fields read as they are, not through dataclasses.asdict, whose deep copy of every list
        # and dict was most of the cost of writing an ADD's two records
        data = {name: getattr(self, name) for name in _RECORD_FIELDS}
        data["original"] = {name: getattr(self.original, name) for name in _ORIGINAL_FIELDS}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AttachmentRecord:
        data = json.loads(text)
        data["original"] = OriginalState(**data.get("original") or {})
        return cls(**data)


_RECORD_FIELDS = tuple(f.name for f in fields(AttachmentRecord))
_ORIGINAL_FIELDS = tuple(f.name for f in fields(OriginalState))


class StateError(CniError):
    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(ErrorCode.IO_FAILURE, msg, details)


class ForeignRecord(StateError):
    """The file for this attachment's key holds another attachment (their keys collide)."""

    def __init__(self, path: str, record: AttachmentRecord) -> None:
        super().__init__(f"state file {path} belongs to another attachment",
                         f"container {record.container_id} ifname {record.ifname}")
        self.record = record


class LockTimeout(CniError):
    def __init__(self, what: str, timeout_s: float) -> None:
        super().__init__(ErrorCode.TRY_AGAIN, f"{what} is busy", f"another CNI call held its lock for {timeout_s:g}s")


class StateStore:
    """Attachment records and per-VF locks under one directory."""

    def __init__(self, root: str) -> None:
        self.root = root

    # -- directory ------------------------------------------------------------------
    def _ensure_dir(self, path: str) -> None:
        # Looked at first, made only when missing: every call passes here several times, and
        # makedirs on a directory that exists costs three system calls to one lstat.
        try:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.makedirs(path, mode=0o700, exist_ok=True)
                st = os.lstat(path)
        except OSError as exc:
            raise StateError(f"state dir {path} is unusable", exc.strerror or str(exc)) from None
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise StateError(f"state dir {path} is not a plain directory", "refusing a symlink or file there")
        if stat.S_IMODE(st.st_mode) & 0o077:
            try:
                os.chmod(path, 0o700)
            except OSError as exc:
                raise StateError(f"state dir {path} cannot be made private (0700)", exc.strerror or str(exc)) from None

    def _path(self, key: str, pending: bool = False) -> str:
        # keys are validated (env.py) before they get here; this guards against a caller that did not
        if "/" in key or key.startswith(".") or "\0" in key:
            raise StateError(f"attachment key {key!r} is not a plain file name")
        return os.path.join(self.root, key + (_PENDING if pending else _SUFFIX))

    def check_usable(self) -> None:
        """STATUS: the directory can be created and written."""
        self._ensure_dir(self.root)
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StateError(f"state dir {self.root} is not writable")

    # -- records --------------------------------------------------------------------
    def save(self, record: AttachmentRecord) -> None:
        """The journal (`complete` False) durably; the committed record atomically, not durably:
        the journal it is written beside stays until DEL (see "Durability" above)."""
        self._ensure_dir(self.root)
        target = self._path(record.key, pending=not record.complete)
        tmp = self._tmp_path(record)
        if os.path.islink(target):
            raise StateError(f"state file {target} is a symlink", "refusing to replace it")
        self._mark_owner(record)
        try:
            # the temp name is per attachment and VF, so DEL finds what a killed write left
            atomicfile.replace(target, record.to_json().encode(), mode=0o600, tmp_name=os.path.basename(tmp),
                               durable=not record.complete)
        except OSError as exc:
            raise StateError(f"cannot write state file {target}", exc.strerror or str(exc)) from None

    def _mark_owner(self, record: AttachmentRecord) -> None:
        """The VF's owner marker (see the layout above), before the record or journal it points to."""
        path = os.path.join(self.root, f"{_OWNER}{record.pci_address}+{record.key}")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        except OSError as exc:
            raise StateError(f"cannot write state file {path}", exc.strerror or str(exc)) from None

    def _tmp_path(self, record: AttachmentRecord) -> str:
        self._path(record.key)  # the same guard as the record's own name
        if "/" in record.pci_address or "\0" in record.pci_address or "+" in record.pci_address:
            raise StateError(f"PCI address {record.pci_address!r} is not a plain file name part")
        suffix = _SUFFIX if record.complete else _PENDING
        return os.path.join(self.root, f".tmp-{record.key}+{record.pci_address}{suffix}")

    def load(self, container_id: str, ifname: str, *, pending: bool = False) -> AttachmentRecord | None:
        """The committed record; with `pending`, else the journal of an interrupted ADD (also in
        place of a record a power cut left unreadable). Raises ForeignRecord when the file holds
        another attachment whose key collides."""
        key = f"{container_id}-{ifname}"
        path = self._path(key)
        try:
            record = self._load_path(path)
        except StateError:
            if not pending or not os.path.lexists(self._path(key, pending=True)):
                raise
            record = None  # not written whole before a power cut: the journal beside it describes it
        if record is None and pending:
            path = self._path(key, pending=True)
            record = self._load_path(path)
        if record is not None and (record.container_id, record.ifname) != (container_id, ifname):
            raise ForeignRecord(path, record)
        return record

    def _load_path(self, path: str) -> AttachmentRecord | None:
        data = self._read_path(path)
        return self._decode(path, data) if data is not None else None

    @staticmethod
    def _read_path(path: str) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StateError(f"state file {path} is a symlink", "refusing to follow it") from None
            raise StateError(f"cannot read state file {path}", exc.strerror or str(exc)) from None
        with os.fdopen(fd, "rb") as f:
            return f.read()

    @staticmethod
    def _decode(path: str, data: bytes) -> AttachmentRecord:
        try:
            return AttachmentRecord.from_json(data.decode())
        except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
            raise StateError(f"state file {path} is corrupt", str(exc)) from None

    def delete(self, container_id: str, ifname: str, *, only_pending: bool = False) -> None:
        key = f"{container_id}-{ifname}"
        paths = [self._path(key, pending=True)] if only_pending else [self._path(key), self._path(key, pending=True)]
        names = _listdir(self.root)
        if not only_pending:  # writes a killed process left half-done (only under this VF's lock)
            paths += [os.path.join(self.root, name) for name in names if name.startswith(f".tmp-{key}+")]
        if not only_pending or not os.path.lexists(self._path(key)):  # the marker goes with the last file
            paths += [os.path.join(self.root, name) for name in names if _marked_owner(name)[1] == key]
        removed = False
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed = True
        if removed:  # once for all of them: the record must not come back after a power cut
            atomicfile.fsync_dir(self.root)

    def records(self, *, pending: bool = False) -> list[AttachmentRecord]:
        """Committed records; with `pending`, also the journals of ADDs without one (interrupted,
        or whose record a power cut left unreadable). One per attachment."""
        return [record for _, record in self._scan(pending=pending)]

    def _scan(self, *, pending: bool, needle: bytes | None = None, names: list[str] | None = None,
              skip_keys: Container[str] = ()) -> list[tuple[str, AttachmentRecord]]:
        """(file name, record) of each attachment; with `needle`, only of files whose bytes hold
        it (the others are not decoded; a journal and its record name the same VF). `names`: the
        directory's listing when the caller has it; `skip_keys`: attachments not to read."""
        suffixes = (_SUFFIX, _PENDING) if pending else (_SUFFIX,)
        out = []
        committed: set[str] = set()
        for name in sorted(_listdir(self.root) if names is None else names):  # a key's .json sorts before its .pending
            if not name.endswith(suffixes) or name.startswith("."):
                continue
            key, suffix = os.path.splitext(name)
            if key in skip_keys:
                continue
            path = os.path.join(self.root, name)
            if key in committed or os.path.islink(path):
                continue  # the journal kept beside its committed record, or a planted link
            with contextlib.suppress(StateError):  # unreadable: a record's journal stands in for it
                data = self._read_path(path)
                if data is None or (needle is not None and needle not in data):
                    continue
                out.append((name, self._decode(path, data)))
                if suffix == _SUFFIX:
                    committed.add(key)
        return out

    def owner_of(self, pci_address: str) -> AttachmentRecord | None:
        """The attachment (record or journal) holding the VF, if any: the one its owner marker
        names, when that record or journal does name the VF (a marker left by a write that never
        happened names nothing). Records without a marker are read too, only those naming the
        address (as a JSON string) decoded. An ADD checks this under the VF's lock."""
        names = _listdir(self.root)
        marked: set[str] = set()
        for name in names:
            vf, key = _marked_owner(name)
            if key is None:
                continue
            marked.add(key)
            if vf == pci_address:
                held = self._record_holding(key, pci_address)
                if held is not None:
                    return held
        needle = json.dumps(pci_address).encode()
        return next((r for _, r in self._scan(pending=True, needle=needle, names=names, skip_keys=marked)
                     if r.pci_address == pci_address), None)

    def _record_holding(self, key: str, pci_address: str) -> AttachmentRecord | None:
        """Attachment `key`'s record (else its journal: an ADD in progress, or a record a power
        cut left unreadable) when it names `pci_address`."""
        for pending in (False, True):
            with contextlib.suppress(StateError):  # a planted link, a torn record: the journal decides
                record = self._load_path(self._path(key, pending=pending))
                if record is not None:
                    return record if record.pci_address == pci_address else None
        return None

    # -- locks ----------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, pci_address: str, timeout_s: float) -> Iterator[None]:
        """Exclusive per-VF lock. flock belongs to the open file, so two threads of
        one process exclude each other as two processes do."""
        lock_dir = os.path.join(self.root, "locks")
        self._ensure_dir(self.root)
        self._ensure_dir(lock_dir)
        path = os.path.join(lock_dir, f"{pci_address}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open lock file {path}", exc.strerror or str(exc)) from None
        try:
            _acquire(fd, f"device {pci_address}", timeout_s)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


    @contextlib.contextmanager
    def attachment_lock(self, container_id: str, ifname: str, timeout_s: float) -> Iterator[None]:
        """Exclusive per-attachment lock, taken before the VF's: a DEL that arrives while its own
        ADD is still running (the runtime gave up waiting; an agent carries on) waits for that ADD
        instead of finding nothing to undo. The file is removed by the holder once the attachment
        has no record left, so they do not pile up; a waiter that then wins a removed file retries."""
        key = f"{container_id}-{ifname}"
        self._path(key)  # the same guard as the record's name
        lock_dir = os.path.join(self.root, "locks")
        self._ensure_dir(self.root)
        self._ensure_dir(lock_dir)
        path = os.path.join(lock_dir, key + _ATTACHMENT_LOCK)
        fd = _acquire_live(path, f"attachment {key}", time.monotonic() + timeout_s, timeout_s)
        try:
            yield
        finally:
            try:
                if not any(os.path.lexists(self._path(key, pending=p)) for p in (False, True)):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def _acquire_live(path: str, what: str, deadline: float, timeout_s: float) -> int:
    """Lock `path`, making sure the file locked is still the one at `path` (not one its last
    holder removed while we waited)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open lock file {path}", exc.strerror or str(exc)) from None
        try:
            _acquire(fd, what, max(0.0, deadline - time.monotonic()), timeout_s)
            held = os.fstat(fd)
            current = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        except BaseException:
            os.close(fd)
            raise
        if current is not None and (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
            return fd
        os.close(fd)  # removed or replaced while we waited: lock the file that is there now


def _acquire(fd: int, what: str, timeout_s: float, reported_timeout_s: float | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeout(what, reported_timeout_s if reported_timeout_s is not None else timeout_s) from None
            time.sleep(_POLL_S)


def _marked_owner(name: str) -> tuple[str, str | None]:
    """(VF, attachment key) of an owner marker's file name; ("", None) for any other name."""
    if not name.startswith(_OWNER):
        return "", None
    vf, plus, key = name[len(_OWNER):].partition("+")
    return (vf, key) if plus and vf and key else ("", None)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
