"""Reliability scenarios shared by `tests/reliability/` (CI sizes) and `bench/reliability_report.py`
(full sizes): each runs on a veth-backed simulated node and returns an `Outcome` — cases tried,
failures (a wrong answer) and leaks (anything not given back: a VF's name, MAC, MTU or PF-side
settings, a state record, journal or temp file, a held lock, an IPAM allocation, a device-info
file). Every function cleans up what it made, also when it fails.
"""

from tests.reliability.scenarios.crash import (
    crash_add_at_every_step,
    crash_agent_at_every_step,
    crash_agent_in_del,
    crash_del_at_every_step,
    kill_while_saving,
)
from tests.reliability.scenarios.deviceplugin_requests import device_plugin_edges
from tests.reliability.scenarios.exposure import modes, no_shell_in_product, shell_uses
from tests.reliability.scenarios.hostile import fuzz_cni
from tests.reliability.scenarios.killstream import kill_stream
from tests.reliability.scenarios.pod_attacks import caller_paths, gc_lists, pod_renames
from tests.reliability.scenarios.races import late_del_of_an_old_pod, races, same_vf_at_once
from tests.reliability.scenarios.restarts import agent_restart_with_pods, kubelet_restart
from tests.reliability.scenarios.rig import (
    KILLED,
    PLUGIN,
    REPORTED,
    Outcome,
    execute,
    is_spec_error,
    process_env,
    shim_for,
)
from tests.reliability.scenarios.second_agent import second_agent
from tests.reliability.scenarios.soak import memory_soak
from tests.reliability.scenarios.stall import socket_attacks
from tests.support.leaks import leak_report

__all__ = [
    "KILLED",
    "PLUGIN",
    "REPORTED",
    "Outcome",
    "agent_restart_with_pods",
    "caller_paths",
    "crash_add_at_every_step",
    "crash_agent_at_every_step",
    "crash_agent_in_del",
    "crash_del_at_every_step",
    "device_plugin_edges",
    "execute",
    "fuzz_cni",
    "gc_lists",
    "is_spec_error",
    "kill_stream",
    "kill_while_saving",
    "kubelet_restart",
    "late_del_of_an_old_pod",
    "leak_report",
    "memory_soak",
    "modes",
    "no_shell_in_product",
    "pod_renames",
    "process_env",
    "races",
    "same_vf_at_once",
    "second_agent",
    "shell_uses",
    "shim_for",
    "socket_attacks",
]
