"""The root directory of the `sriov` shim's caller (the container runtime, on the host), handed to
the agent with each call as a file descriptor (SCM_RIGHTS).

The agent's own pod may not see the paths a runtime gives a CNI plugin: upstream's device-plugin
DaemonSet, run with sriovkit's image, mounts neither the host's /var/run/netns (CNI_NETNS) nor
/opt/cni/bin (CNI_PATH, the IPAM plugins) nor the IPAM plugins' state. Through the caller's root
it reaches all of them as the runtime means them: `link` (a symlink in the agent's own filesystem,
e.g. /run/sriovkit/caller-root) points at /proc/<agent pid>/fd/<kept descriptor>, so
`link + CNI_NETNS` is the pod's namespace, and IPAM plugins run chrooted into `link` with the
host's files (sriovkit.cni.ipam). Each call re-points the link at the root its caller sent: a
caller's mount namespace can end with it (the runtime's does not; `ip netns exec`'s does), and a
root kept from a finished one no longer holds that namespace's mounts. The last few are kept
open, so a path being resolved through the link while it moves still finds one. Only root can
reach the agent's socket (mode 0600).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)


KEEP_OPEN = 8  # roots kept after the link moved on (a path walk through the link takes microseconds)


class CallerRoot:
    def __init__(self, link: str | Path) -> None:
        self.link = Path(link)
        self._fds: deque[int] = deque()
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return bool(self._fds)

    def adopt(self, fd: int) -> None:
        """Take ownership of `fd`: the link points at it if it is a directory; else it is closed."""
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            return
        with self._lock:
            self._point_link_at(fd)
            if not self._fds:
                log.info("caller root linked link=%s", self.link)
            self._fds.append(fd)
            while len(self._fds) > KEEP_OPEN:
                os.close(self._fds.popleft())

    def _point_link_at(self, fd: int) -> None:
        self.link.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(f"/proc/{os.getpid()}/fd/{fd}", tmp)
        os.replace(tmp, self.link)  # a link left by an earlier agent is replaced in one step

    def close(self) -> None:
        with self._lock:
            if self._fds:
                with contextlib.suppress(FileNotFoundError):
                    self.link.unlink()
            while self._fds:
                os.close(self._fds.popleft())


MAX_SYMLINKS = 40  # as the kernel's path walk


def resolve_in(root: str, path: str) -> str:
    """`root` + `path` with every symlink on the way resolved as the caller resolves it: an
    absolute target starts again at `root`, not at this process's root (/var/run -> /run on most
    hosts). A missing component ends the walk: the rest is appended as it is."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = "/".join([root, *done, part])
        try:
            target = os.readlink(candidate)
        except OSError:  # not a symlink, or not there
            done.append(part)
            continue
        hops += 1
        if hops > MAX_SYMLINKS:
            return "/".join([root, *done, part, *parts])  # the open fails with ELOOP-like ENOENT, as it should
        if target.startswith("/"):
            done = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return "/".join([root, *done])
