"""The CNI_* environment, validated before anything on the node is touched.

CNI_CONTAINERID and CNI_IFNAME become parts of file names (state, locks), so
they are held to the spec's character sets: nothing that could climb out of
the state directory or confuse a path ever reaches one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sriovkit.cni.netconf import parse_cni_args
from sriovkit.cni.spec import COMMANDS, CniError, ErrorCode, valid_ifname
from sriovkit.netlink.netns import is_own_netns

# spec: "alphanumeric, underscore, hyphen or period", starting alphanumeric
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
# a Linux interface name: at most 15 bytes, no '/', ':' or whitespace, not '.' or '..'
_NEEDS_CONTAINER = frozenset({"ADD", "DEL", "CHECK"})


@dataclass(frozen=True, slots=True)
class CniEnv:
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    runtime_ifname: str = ""  # CNI_IFNAME when the netconf's if0name (seeds) replaced it
    path: tuple[str, ...] = ()
    args: dict[str, str] = field(default_factory=dict)
    raw_args: str = ""

    @property
    def attachment(self) -> str:
        """The key of one attachment: what state files and logs are named by."""
        return f"{self.container_id}-{self.ifname}"


def valid_container_id(value: str) -> bool:
    return bool(_CONTAINER_ID.fullmatch(value)) and ".." not in value


def parse_env(env: Mapping[str, str], netns_exists: Callable[[str], bool]) -> CniEnv:
    """Validate the CNI_* variables for the command; every problem is reported at once."""
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CniError(ErrorCode.INVALID_ENV, "CNI_COMMAND is missing or unknown",
                       f"got {command!r}; expected one of {', '.join(sorted(COMMANDS))}")
    if command not in _NEEDS_CONTAINER:
        return CniEnv(command=command, path=_cni_path(env))
    problems: list[str] = []
    container_id = env.get("CNI_CONTAINERID", "")
    if not valid_container_id(container_id):
        problems.append(f"CNI_CONTAINERID {container_id!r} must be letters, digits, '_', '.', '-' "
                        "(starting with a letter or digit)")
    ifname = env.get("CNI_IFNAME", "")
    if not valid_ifname(ifname):
        problems.append(f"CNI_IFNAME {ifname!r} must be 1-15 letters, digits, '_', '.', '-', '@'")
    netns = env.get("CNI_NETNS", "")
    if command != "DEL" and not netns:
        problems.append("CNI_NETNS is required")
    elif netns and (not os.path.isabs(netns) or "\0" in netns):
        problems.append(f"CNI_NETNS {netns!r} must be an absolute path")
    if problems:
        raise CniError(ErrorCode.INVALID_ENV, "invalid CNI environment", "; ".join(problems))
    if command != "DEL" and not netns_exists(netns):
        raise CniError(ErrorCode.UNKNOWN_CONTAINER, f"CNI_NETNS {netns} is not a network namespace",
                       "the path does not exist or is not a network namespace's nsfs file")
    if command != "DEL" and is_own_netns(netns):
        raise CniError(ErrorCode.INVALID_ENV, f"CNI_NETNS {netns} is the host's own network namespace",
                       "a pod's interface cannot be moved where it already is")
    raw_args = env.get("CNI_ARGS", "")
    return CniEnv(command=command, container_id=container_id, netns=netns, ifname=ifname,
                  path=_cni_path(env), args=parse_cni_args(raw_args), raw_args=raw_args)


def _cni_path(env: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(p for p in env.get("CNI_PATH", "").split(os.pathsep) if p)
