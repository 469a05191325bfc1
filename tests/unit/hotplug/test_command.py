"""`sriovctl hotplug` flags: every problem one line, exit 2, before anything starts."""

from __future__ import annotations

from pathlib import Path

from sriovkit.cli import main


def test_bad_flags_are_one_line_each(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.delenv("NODE_NAME", raising=False)
    code = main(["hotplug", "--kubeconfig", str(tmp_path / "none"), "--cni-bin-dir", f"{tmp_path}:{tmp_path}/x",
                 "--resync-seconds", "0"])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "sriovctl: --node-name: required (or env NODE_NAME)",
        f"sriovctl: --kubeconfig {tmp_path}/none: no such file",
        f"sriovctl: --cni-bin-dir: {tmp_path}/x is not a directory",
        "sriovctl: --resync-seconds 0.0: must be positive"]


def test_unreadable_kubeconfig_is_one_line(tmp_path: Path, capsys):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    code = main(["hotplug", "--kubeconfig", str(kubeconfig), "--node-name", "n", "--cni-bin-dir", str(tmp_path)])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"sriovctl: --kubeconfig {kubeconfig}: ")


def test_agent_hotplug_flags_checked_before_the_agent_starts(tmp_path: Path, capsys, monkeypatch):
    from sriovkit.sim import host as sim

    monkeypatch.delenv("NODE_NAME", raising=False)
    sim.create(tmp_path / "host", {"pfs": [{"name": "enp1s0f0", "numVfs": 1}]})
    (tmp_path / "config.json").write_text('{"resourceList": []}')
    code = main(["agent", "--config-file", str(tmp_path / "config.json"), "--host-root", str(tmp_path / "host"),
                 "--device-plugin-dir", str(tmp_path / "dp"), "--cni-socket", "", "--metrics-address", "",
                 "--hotplug", "--cni-bin-dir", str(tmp_path), "--hotplug-resync-seconds", "-1"])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "sriovctl: --node-name: required (or env NODE_NAME)",
        "sriovctl: --hotplug-resync-seconds -1.0: must be positive"]
    assert not (tmp_path / "dp").exists()  # nothing was started


def test_agent_takes_hotplug_flags_sharing_pod_resources_socket(monkeypatch):
    from sriovkit.cli import build_parser

    monkeypatch.delenv("NODE_NAME", raising=False)
    args = build_parser().parse_args(["agent", "--config-file", "c.json"])
    assert (args.hotplug, args.node_name, args.state_dir) == (False, None, "/var/lib/sriovkit/hotplug")
    assert args.pod_resources_socket == "/var/lib/kubelet/pod-resources/kubelet.sock"  # one flag, both parts
