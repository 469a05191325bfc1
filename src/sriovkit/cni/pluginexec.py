"""Executing a CNI plugin binary, as the spec and libcni do: the one implementation.

The sriov plugin delegates to its IPAM plugin through it (`cni.ipam`), hot-plug runs a network's
whole chain through it (`hotplug.cniexec`): a binary found in the CNI path, the CNI_* environment,
the network config on stdin, a time limit, and its stdout read back as JSON (as any JSON we read:
`gojson`, so deep nesting or NaN is no answer) or as the spec's error object.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sriovkit import gojson
from sriovkit.errors import SriovkitError

_DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class PluginExecError(SriovkitError):
    """The plugin could not be run, or gave no answer in time; the message says which."""


@dataclass(frozen=True, slots=True)
class PluginReply:
    """What the plugin answered: its exit status and its output."""

    returncode: int
    stdout: bytes
    stderr: bytes

    def output(self) -> Any:
        """stdout as JSON: {} when empty, None when it is not JSON."""
        text = self.stdout.strip()
        if not text:
            return {}
        try:
            return gojson.plain(gojson.parse(text).value)
        except gojson.JsonError:
            return None

    def spec_error(self) -> dict[str, Any] | None:
        """The spec's error object (with an integer `code`) a failed plugin printed, if it did."""
        data = self.output() if self.returncode != 0 else None
        return data if isinstance(data, dict) and isinstance(data.get("code"), int) else None


def find_plugin(name: str, search_path: Sequence[str]) -> str | None:
    """The first executable file named `name` in the directories of the CNI path."""
    for directory in search_path:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def run_plugin(binary: str, command: str, config: Mapping[str, Any], *, container_id: str, netns: str,
               ifname: str, cni_args: str, cni_path: Sequence[str], timeout_s: float,
               extra_env: Mapping[str, str] | None = None, chroot: str = "") -> PluginReply:
    """One exec of `binary` for `command`. With `chroot`, the plugin runs with that directory as
    its root (the caller's root, where the agent serves a shim from another filesystem view):
    `binary`, `netns` and `cni_path` are then paths inside it."""
    env = {"PATH": os.environ.get("PATH", _DEFAULT_PATH), **(extra_env or {}),
           "CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
           "CNI_ARGS": cni_args, "CNI_PATH": os.pathsep.join(cni_path)}

    def enter_root() -> None:  # in the child, before exec: the plugin sees the caller's files
        os.chroot(chroot)
        os.chdir("/")

    try:
        proc = subprocess.run([binary], input=json.dumps(config).encode(), env=env, capture_output=True,
                              timeout=timeout_s, check=False, cwd="/", preexec_fn=enter_root if chroot else None)
    except subprocess.TimeoutExpired:
        raise PluginExecError(f"no answer in {timeout_s:g} s") from None
    except OSError as exc:
        raise PluginExecError(f"cannot run {binary}: {exc.strerror or exc}") from None
    return PluginReply(proc.returncode, proc.stdout, proc.stderr)
