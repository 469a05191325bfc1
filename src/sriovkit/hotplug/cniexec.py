"""Running a network's CNI plugins, as libcni does: one binary per plugin from the bin dir,
the standard CNI_* environment, the config on stdin, ADD in order with `prevResult`
chained, DEL in reverse with the cached result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sriovkit.cni import pluginexec
from sriovkit.errors import SriovkitError

DEFAULT_TIMEOUT_S = 120.0


class CniExecError(SriovkitError, RuntimeError):
    """A plugin failed; the message has the plugin, the command and the plugin's own error."""


class PluginNotFound(CniExecError):
    """A plugin of the chain is not in the bin dirs: nothing ran."""


@dataclass(frozen=True, slots=True)
class CniRuntime:
    """Where the plugins live and what every call gets."""

    bin_dirs: tuple[str, ...]
    timeout_s: float = DEFAULT_TIMEOUT_S
    extra_env: Mapping[str, str] | None = None  # e.g. SRIOVKIT_HOST_ROOT for the sriov plugin

    def find(self, plugin_type: str) -> str:
        path = pluginexec.find_plugin(plugin_type, self.bin_dirs)
        if path is not None:
            return path
        raise PluginNotFound(f"CNI plugin {plugin_type!r} not found in {':'.join(self.bin_dirs)}")


@dataclass(frozen=True, slots=True)
class CniCall:
    """The runtime arguments of one attachment (CNI spec section 'Parameters')."""

    container_id: str
    netns: str
    ifname: str
    pod_namespace: str
    pod_name: str
    pod_uid: str
    extra_args: Mapping[str, str] | None = None

    def cni_args(self) -> str:
        args = {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": self.pod_namespace, "K8S_POD_NAME": self.pod_name,
                "K8S_POD_INFRA_CONTAINER_ID": self.container_id, "K8S_POD_UID": self.pod_uid,
                **(self.extra_args or {})}
        return ";".join(f"{k}={v}" for k, v in args.items())


def plugin_configs(network_config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each plugin's stdin without prevResult: the conflist's `name` and `cniVersion` added."""
    return [{"cniVersion": network_config["cniVersion"], "name": network_config["name"], **plugin}
            for plugin in network_config["plugins"]]


def add(runtime: CniRuntime, network_config: Mapping[str, Any], call: CniCall) -> dict[str, Any]:
    """ADD through the chain; the last plugin's result. On failure the caller runs `delete` (it
    knows whether the record still needs the attachment)."""
    configs = plugin_configs(network_config)
    for config in configs:  # every binary first: a chain that cannot run whole does not start
        runtime.find(str(config["type"]))
    result: dict[str, Any] | None = None
    for config in configs:
        if result is not None:
            config["prevResult"] = result
        result = _exec(runtime, "ADD", config, call)
    return result or {}


def delete(runtime: CniRuntime, network_config: Mapping[str, Any], call: CniCall,
           cached: Mapping[str, Any] | None) -> None:
    """DEL through the chain in reverse, each plugin with the cached result as prevResult."""
    errors = []
    for config in reversed(plugin_configs(network_config)):
        if cached:
            config["prevResult"] = dict(cached)
        try:
            _exec(runtime, "DEL", config, call)
        except CniExecError as exc:
            errors.append(str(exc))
    if errors:
        raise CniExecError("; ".join(errors))


def _exec(runtime: CniRuntime, command: str, config: Mapping[str, Any], call: CniCall) -> dict[str, Any]:
    binary = runtime.find(str(config["type"]))
    what = f"{config['type']} {command} {call.ifname}"
    try:
        reply = pluginexec.run_plugin(binary, command, config, container_id=call.container_id, netns=call.netns,
                                      ifname=call.ifname, cni_args=call.cni_args(), cni_path=runtime.bin_dirs,
                                      timeout_s=runtime.timeout_s, extra_env=runtime.extra_env)
    except pluginexec.PluginExecError as exc:
        raise CniExecError(f"{what}: {exc}") from None
    if reply.returncode != 0:
        raise CniExecError(f"{what}: {_error_text(reply)}")
    if command != "ADD":
        return {}
    result = reply.output()
    out = reply.stdout.decode(errors="replace").strip()
    if result is None:
        raise CniExecError(f"{what}: result is not JSON: {out[:200]!r}")
    if not isinstance(result, dict):
        raise CniExecError(f"{what}: result is not an object: {out[:200]!r}")
    return result


def _error_text(reply: pluginexec.PluginReply) -> str:
    error = reply.spec_error()
    if error is not None:
        text = str(error.get("msg", "")) + (f": {error['details']}" if error.get("details") else "")
        return f"{text} (code {error.get('code')})"
    stdout = reply.stdout.decode(errors="replace").strip()
    tail = reply.stderr.decode(errors="replace").strip().splitlines()
    return (stdout or (tail[-1] if tail else "")) or "failed without a message"


def network_config(definition_plugins: Sequence[Mapping[str, Any]], *, cni_version: str, name: str,
                   device_id: str | None, runtime_config: Mapping[str, Any],
                   cni_args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The conflist a hot-plug runs: `deviceID` into every plugin (as Multus does), the selection's
    `cni-args` into `args.cni`, and its runtime values into the plugins that declare the capability."""
    plugins = []
    for plugin in definition_plugins:
        conf = dict(plugin)
        if device_id is not None:
            conf["deviceID"] = device_id
        if cni_args:
            args = dict(conf.get("args") or {})
            args["cni"] = {**(args.get("cni") or {}), **cni_args}
            conf["args"] = args
        capabilities = conf.get("capabilities") or {}
        wanted = {k: v for k, v in runtime_config.items() if capabilities.get(k)}
        if wanted:
            conf["runtimeConfig"] = {**(conf.get("runtimeConfig") or {}), **wanted}
        plugins.append(conf)
    return {"cniVersion": cni_version, "name": name, "plugins": plugins}


def in_bin_dir(path: str | Path) -> tuple[str, ...]:
    return tuple(p for p in str(path).split(":") if p)
