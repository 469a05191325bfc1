"""A plugin process killed in the middle of ADD: the journal lets DEL give everything back."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sriovkit.cni.spec import ErrorCode
from tests.support.cni_host import Node
from tests.support.ipam import ipam_allocations
from tests.support.kernel import pod_link
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root


def test_del_after_the_plugin_was_killed_mid_add(node: Node, netns: NetnsFactory, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    reached = tmp_path / "ipam-reached"
    wrapper = bin_dir / "slow-ipam"
    # allocates for real, then tells the test it got here and hangs until killed
    wrapper.write_text(f"""#!/bin/sh
if [ "$CNI_COMMAND" = ADD ]; then
  /usr/lib/cni/host-local < /dev/stdin > /dev/null; touch {reached}; sleep 60
fi
exec /usr/lib/cni/host-local
""")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    node.cni_path = f"{bin_dir}:/usr/lib/cni"
    pod = netns()
    conf = node.conf(2, vlan=77, spoofchk="off", mac="02:00:00:00:77:77", mtu=1400,
                     ipam={**node.host_local(), "type": "slow-ipam"})
    env = {**node.env("ADD", pod), "SRIOVKIT_HOST_ROOT": str(node.host.root),
           "SRIOVKIT_CNI_STATE_DIR": str(node.state_dir), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.Popen([sys.executable, "-m", "sriovkit.cni.plugin"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(conf).encode())
    proc.stdin.close()
    try:
        for _ in range(400):
            if reached.exists():
                break
            time.sleep(0.025)
        assert reached.exists(), "the ADD never reached IPAM"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    # half-attached: moved, configured, an address allocated, no record; only the journal
    assert pod_link(pod, "net1") is not None
    assert node.ctx.netlink.vf_settings(node.pf, 2).vlan == 77
    assert len(ipam_allocations(node.ipam_dir)) == 1
    assert sorted(p.name for p in node.state_dir.iterdir() if p.is_file()) == [f".owner+{node.vf(2)}+c1-net1",
                                                                               "c1-net1.pending"]

    other, code = node.run("ADD", node.conf(2), netns(), CNI_CONTAINERID="c2")
    assert code == 1 and other["code"] == ErrorCode.DEVICE_UNUSABLE  # the VF is still someone's

    assert node.run("DEL", conf, pod) == (None, 0)
    assert pod_link(pod, "net1") is None
    # the fixture checks the VF's name, MAC, MTU and settings, the IPAM allocation and the state dir
