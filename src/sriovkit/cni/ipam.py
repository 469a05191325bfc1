"""Delegation to the IPAM plugin, exactly as the CNI spec describes it.

The plugin named by ``ipam.type`` is looked up in CNI_PATH and executed with
the same CNI_* environment and the same network config on stdin; its stdout is
its result (or the spec's error JSON with a non-zero exit).

When the IPAM plugin does not speak the config's cniVersion (Debian's
host-local stops at 1.0.0), the config is handed to it with the newest version
both speak: the result is converted back to the caller's version anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sriovkit.cni import pluginexec
from sriovkit.cni.spec import CniError, ErrorCode, Result, best_common_version, parse_result

IPAM_TIMEOUT_S = 60.0

# IPAM plugins whose answer depends on nothing but their config and the attachment's ids: they
# never enter the pod's namespace nor look at its interface, so ADD and DEL run them while the VF
# is being set up or given back (`sriovkit.cni.steps.Steps.start`) instead of before or after it.
# Any other plugin (dhcp talks on the interface; an unknown one might) keeps its place in the
# sequence, where upstream's plugin runs it.
INTERFACE_BLIND = frozenset({"host-local", "static", "whereabouts"})


@dataclass(frozen=True, slots=True)
class IpamCall:
    """Everything one exec of the IPAM plugin needs besides the command."""

    plugin: str  # ipam.type
    search_path: tuple[str, ...]
    container_id: str
    netns: str
    ifname: str
    cni_args: str
    config: Mapping[str, Any]  # the whole network config, as the plugin received it
    caller_root: str = ""  # CniContext.caller_root: run the plugin chrooted there, paths without it


class IpamError(CniError):
    pass


def runs_alongside(call: IpamCall) -> bool:
    """Whether this exec may overlap the VF's own steps (INTERFACE_BLIND)."""
    return call.plugin in INTERFACE_BLIND


def find_plugin(name: str, search_path: tuple[str, ...]) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise IpamError(ErrorCode.INVALID_CONFIG, f"ipam.type {name!r} is not a plugin name")
    found = pluginexec.find_plugin(name, search_path)
    if found is not None:
        return found
    raise IpamError(ErrorCode.IPAM_FAILED, f"IPAM plugin {name!r} not found",
                    f"searched CNI_PATH {':'.join(search_path) or '(empty)'}")


def ipam_add(call: IpamCall) -> Result:
    out = _exec_versioned(call, "ADD")
    result = parse_result(out, f"IPAM plugin {call.plugin} result")
    if not result.ips:
        raise IpamError(ErrorCode.IPAM_FAILED, f"IPAM plugin {call.plugin} returned no IP address")
    return result


def ipam_del(call: IpamCall) -> None:
    _exec_versioned(call, "DEL")


def ipam_check(call: IpamCall) -> None:
    _exec_versioned(call, "CHECK")


def ipam_supports(call: IpamCall, version: str) -> bool:
    versions = _exec(call, "VERSION", call.config).get("supportedVersions") or []
    return version in versions


def ipam_lifecycle(call: IpamCall, command: str) -> None:
    """STATUS or GC, only to a plugin that speaks 1.1.0 (older ones have no such command)."""
    if ipam_supports(call, "1.1.0"):
        _exec(call, command, call.config)


def _exec_versioned(call: IpamCall, command: str) -> dict[str, Any]:
    try:
        return _exec(call, command, call.config)
    except IpamError as exc:
        if exc.code != ErrorCode.INCOMPATIBLE_VERSION:
            raise
        offered = _exec(call, "VERSION", call.config).get("supportedVersions") or []
        version = best_common_version(str(call.config.get("cniVersion", "")), list(offered))
        if version is None:
            raise
    return _exec(call, command, {**call.config, "cniVersion": version})


def _in_caller_root(root: str, path: str) -> str:
    return (path[len(root):] or "/") if root and path.startswith(f"{root}/") else path


def _exec(call: IpamCall, command: str, config: Mapping[str, Any]) -> dict[str, Any]:
    root = call.caller_root
    binary = find_plugin(call.plugin, call.search_path)
    try:
        reply = pluginexec.run_plugin(
            _in_caller_root(root, binary), command, config, container_id=call.container_id,
            netns=_in_caller_root(root, call.netns), ifname=call.ifname, cni_args=call.cni_args,
            cni_path=[_in_caller_root(root, p) for p in call.search_path], timeout_s=IPAM_TIMEOUT_S, chroot=root)
    except pluginexec.PluginExecError as exc:
        raise IpamError(ErrorCode.IPAM_FAILED, f"IPAM plugin {call.plugin} {command} could not run",
                        str(exc)) from None
    return _parse_output(call.plugin, command, reply.returncode, reply.stdout, reply.stderr)


def _parse_output(plugin: str, command: str, code: int, stdout: bytes, stderr: bytes) -> dict[str, Any]:
    reply = pluginexec.PluginReply(code, stdout, stderr)
    if code != 0:
        error = reply.spec_error()
        if error is not None:
            msg = f"IPAM plugin {plugin} {command} failed: {error.get('msg', '')}"
            raise IpamError(error["code"], msg, str(error.get("details", "")))
        reason = (stderr or stdout).decode(errors="replace").strip()[:500] or f"exit status {code}"
        raise IpamError(ErrorCode.IPAM_FAILED, f"IPAM plugin {plugin} {command} failed", reason)
    data = reply.output()
    if not isinstance(data, dict):
        raise IpamError(ErrorCode.DECODE_FAILURE, f"IPAM plugin {plugin} {command} printed no JSON object",
                        stdout.strip()[:200].decode(errors="replace"))
    return data
