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
