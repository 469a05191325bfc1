"""`HostLinkWatch`: whether the simulator's catch-up can find anything, from the host namespace's
link notifications since its last look.

The catch-up (`SimulatedSwitchNetlink.return_vfs_of_dead_namespaces`) looks for two things: a pair
that died with a pod's namespace (its peer, in the host, is deleted with it) and a VF end back in
the host while the tree still has it away (moved home by a process that died before it updated
the tree). Both show up as notifications in the host namespace: an RTM_DELLINK naming a peer, an
RTM_NEWLINK for a link that appeared. Everything else a burst of pod starts makes there (VF ends
leaving, peers' carrier going up and down) says neither, so the operations that start meanwhile
need no dump of the host's links, which under load cost each of them tens of milliseconds
waiting for the one catch-up at a time. The arrivals this handle makes itself (a DEL moving a VF
home) are told beforehand and do not count: the mover updates the tree after its move.

When in doubt it says look: the first time (nothing was watched before), after the socket
overran, when it cannot subscribe at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sriovkit.netlink.linkevents import LinkEvents, LinkNote
from sriovkit.netlink.rtmsg import RTM_DELLINK


class HostLinkWatch:
    """The host namespace's link notifications, read at each catch-up. `worth_a_look` is called by
    one catch-up at a time; `expect_arrival`/`withdraw` from any thread."""

    def __init__(self, is_peer: Callable[[str], bool]) -> None:
        self._is_peer = is_peer
        self._events: LinkEvents | None = None
        self._lock = threading.Lock()
        self._expected: dict[int, tuple[str, str]] = {}
        self._tokens = 0

    def expect_arrival(self, name: str, new_name: str) -> int:
        """Before moving a link home as `new_name` from a pod where it is `name`: its arrival is
        this handle's (the kernel names it `name` on arrival when that is free in the host, else
        `new_name`). Returns the token `withdraw` takes should the move not happen."""
        with self._lock:
            self._tokens += 1
            self._expected[self._tokens] = (name, new_name)
            return self._tokens

    def withdraw(self, token: int) -> None:
        with self._lock:
            self._expected.pop(token, None)

    def worth_a_look(self) -> bool:
        """Whether anything the catch-up looks for may have happened since the last call."""
        if self._events is None:
            try:
                self._events = LinkEvents(timeout_s=0)
            except OSError:
                return True  # no notifications to go by: look every time, as without a watch
            return True  # subscribed only now: what happened before is unknown
        notes = self._events.drain()
        if notes is None:
            with self._lock:
                self._expected.clear()  # their arrivals may be among what was dropped
            return True
        return any([self._says_look(note) for note in notes])  # every note read: arrivals are consumed

    def _says_look(self, note: LinkNote) -> bool:
        if note.kind == RTM_DELLINK:
            return note.name is None or self._is_peer(note.name)
        return note.appeared and not self._consume_expected(note.name)

    def _consume_expected(self, name: str | None) -> bool:
        with self._lock:
            token = next((t for t, names in self._expected.items() if name in names), None)
            if token is None:
                return False
            del self._expected[token]
            return True

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
