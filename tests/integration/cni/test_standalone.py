"""The plugin as a runtime executes it: a separate process reading env and stdin.

Both entry points (`sriov` console script / ``python -m sriovkit.cni.plugin``,
and the agent's in-process `run_cni`) must print the same bytes for the same
input; the installed shim with its in-process fallback goes the same way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sriovkit.cni.plugin import run_cni
from sriovkit.shim.install import ShimSettings, install_shim
from tests.support.cni_host import Node
from tests.support.kernel import pod_link
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root
SRIOV_SCRIPT = str(Path(sys.executable).with_name("sriov"))


def _process_env(node: Node, env: dict[str, str]) -> dict[str, str]:
    return {**env, "SRIOVKIT_HOST_ROOT": str(node.host.root), "SRIOVKIT_CNI_STATE_DIR": str(node.state_dir),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def _exec(argv: list[str], env: dict[str, str], conf: dict[str, Any]) -> tuple[bytes, int]:
    proc = subprocess.run(argv, input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60,
                          check=False)
    return proc.stdout, proc.returncode


def _static(node: Node, version: str) -> dict[str, Any]:
    return node.conf(1, version=version, mac="02:00:00:00:5a:01", vlan=11,
                     ipam={"type": "static", "addresses": [{"address": "10.55.0.9/24", "gateway": "10.55.0.1"}],
                           "routes": [{"dst": "0.0.0.0/0"}]})


# the sockets one ADD and DEL open: rtnetlink (reads and changes), a packet socket (the pod's
# address announcements), unix sockets (locks, logging)
KNOWN_SOCKETS = {("AF_NETLINK", "NETLINK_ROUTE"), ("AF_PACKET", "0"), ("AF_UNIX", "0")}


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to watch the system calls")
def test_add_and_del_make_no_call_that_makes_the_kernel_load_modules(
        node: Node, netns: NetnsFactory, tmp_path: Path) -> None:
    """Each call below makes a kernel with modules run modprobe and wait for it (0.1-0.8 s each in
    the VM lab, on every ADD and DEL, where bench/vm_cni.py --modlog traces them): an ioctl naming an
    interface that is absent ("netdev-NAME"), a socket of a family or protocol not built in
    ("net-pf-N-proto-M"), a link request naming a kind ("rtnl-link-KIND"). A whole ADD and DEL
    (VLAN, MAC, an address, a gateway and a route) makes none of them, nor opens a socket of a
    kind not listed here (a new one: check it is built into the kernels we run on)."""
    pod, trace = netns(), tmp_path / "trace"
    conf = _static(node, "1.0.0")
    argv = ["strace", "-f", "-qq", "-A", "-o", str(trace), "-e", "trace=socket,ioctl,sendto,sendmsg",
            sys.executable, "-m", "sriovkit.cni.plugin"]
    add = _exec(argv, _process_env(node, node.env("ADD", pod)), conf)
    assert add[1] == 0, add
    assert _exec(argv, _process_env(node, node.env("DEL", pod)), conf) == (b"", 0)
    lines = trace.read_text().splitlines()
    assert pod_link(pod, "net1") is None
    assert [line for line in lines if re.search(r"ioctl\(\d+, SIOC(GIF|SIF|ETHTOOL)", line)] == []
    # the protocol as strace prints it: a name, a number, or htons(N /* ETH_P_... */) for a packet socket
    sockets = {(m[1], re.sub(r"^htons\((\d+).*", r"\1", m[2]))
               for line in lines if (m := re.search(r"socket\((AF_\w+), [^,]+, (.+)\) = ", line))}
    assert sockets <= KNOWN_SOCKETS, sockets
    assert {("AF_NETLINK", "NETLINK_ROUTE"), ("AF_PACKET", "0")} <= sockets  # the trace saw both calls
    assert [line for line in lines if "RTM_NEWLINK" in line and "IFLA_NET_NS_FD" in line]  # the moves, decoded
    assert not [line for line in lines if "IFLA_LINKINFO" in line]  # no link request names a kind


@pytest.mark.parametrize("argv", [[SRIOV_SCRIPT], [sys.executable, "-m", "sriovkit.cni.plugin"]],
                         ids=["console-script", "python-m"])
def test_standalone_add_del_prints_what_run_cni_prints(node: Node, netns: NetnsFactory, argv: list[str]) -> None:
    pod = netns()
    conf = _static(node, "1.1.0")
    add_env = node.env("ADD", pod)
    standalone_add = _exec(argv, _process_env(node, add_env), conf)
    assert standalone_add[1] == 0, standalone_add
    assert pod_link(pod, "net1") is not None
    assert _exec(argv, _process_env(node, node.env("DEL", pod)), conf) == (b"", 0)

    in_process_add = run_cni(add_env, json.dumps(conf).encode(), node.ctx)
    assert in_process_add == standalone_add
    assert run_cni(node.env("DEL", pod), json.dumps(conf).encode(), node.ctx) == (b"", 0)


@pytest.mark.parametrize(("env", "conf"), [
    ({"CNI_COMMAND": "VERSION"}, {"cniVersion": "0.3.1"}),
    ({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "../x", "CNI_IFNAME": "net1", "CNI_NETNS": "/nope"},
     {"cniVersion": "0.4.0", "name": "n"}),
    ({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "net1", "CNI_NETNS": "/proc/self/ns/net"},
     {"cniVersion": "1.0.0", "name": "n", "vlan": 9999, "deviceID": "nope"}),
    ({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "net1"},
     {"cniVersion": "1.0.0", "name": "n", "vlan": 9999}),
])
def test_errors_and_version_are_byte_identical(node: Node, env: dict[str, str], conf: dict[str, Any]) -> None:
    standalone = _exec([sys.executable, "-m", "sriovkit.cni.plugin"], _process_env(node, env), conf)
    assert standalone == run_cni(env, json.dumps(conf).encode(), node.ctx)


@pytest.mark.parametrize("native", [False, True], ids=["python-shim", "native-shim"])
def test_shim_falls_back_to_the_plugin_when_the_agent_is_down(node: Node, netns: NetnsFactory,
                                                              tmp_path: Path, native: bool) -> None:
    bin_dir = tmp_path / "cni-bin"
    bin_dir.mkdir()
    shim = install_shim(bin_dir, ShimSettings(agent_socket=str(tmp_path / "no-agent.sock"),
                                              fallback_python=sys.executable, interpreter=sys.executable,
                                              native=native))
    pod = netns()
    conf = _static(node, "0.4.0")
    out, code = _exec([str(shim)], _process_env(node, node.env("ADD", pod)), conf)
    assert code == 0, out
    assert json.loads(out)["ips"] == [{"version": "4", "interface": 0, "address": "10.55.0.9/24",
                                       "gateway": "10.55.0.1"}]
    assert _exec([str(shim)], _process_env(node, node.env("DEL", pod)), conf) == (b"", 0)
