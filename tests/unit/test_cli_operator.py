"""What an operator hits first on the command line: one name per concept (old spellings kept),
--version, one line instead of a traceback, tables that show what the JSON has and stay readable."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sriovkit import __version__
from sriovkit.cli import build_parser, main
from sriovkit.output import summarize_ids


@pytest.mark.parametrize(("command", "canonical", "alias", "dest"), [
    (["install-cni"], "--cni-bin-dir", "--dest", "dest"),
    (["install-cni"], "--cni-socket", "--agent-socket", "agent_socket"),
    (["install-cni"], "--cni-state-dir", "--state-dir", "state_dir"),
    (["hotplug"], "--hotplug-state-dir", "--state-dir", "state_dir"),
    (["hotplug"], "--hotplug-resync-seconds", "--resync-seconds", "resync_seconds"),
])
def test_one_name_per_concept_and_the_old_spelling_still_works(command: list[str], canonical: str, alias: str,
                                                               dest: str) -> None:
    parser = build_parser()
    new = vars(parser.parse_args([*command, canonical, "7"]))[dest]
    old = vars(parser.parse_args([*command, alias, "7"]))[dest]
    assert new == old and str(new).startswith("7")


def test_agent_and_install_cni_share_the_names() -> None:
    parser = build_parser()
    agent = parser.parse_args(["agent", "--config-file", "c", "--cni-socket", "/s", "--cni-state-dir", "/d",
                               "--cni-bin-dir", "/b", "--hotplug-state-dir", "/h"])
    install = parser.parse_args(["install-cni", "--cni-socket", "/s", "--cni-state-dir", "/d", "--cni-bin-dir", "/b"])
    assert (agent.cni_socket, agent.cni_state_dir, agent.cni_bin_dir) == (install.agent_socket, install.state_dir,
                                                                          install.dest)


def test_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "sriovkit.cli", "--version"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == f"sriovctl {__version__}"


def test_a_daemon_builds_only_its_own_command_line() -> None:
    from sriovkit import cli

    every = {name for name in build_parser()._subparsers._group_actions[0].choices}  # type: ignore[union-attr]
    for command, module in cli._DAEMONS.items():
        assert command in every
        alone = cli.build_parser(module)._subparsers._group_actions[0].choices  # type: ignore[union-attr]
        assert set(alone) == {command}
        # the same flags as in the whole command line
        full = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
        assert alone[command].format_help() == full.format_help()


def test_the_version_the_code_says_is_the_packaged_one() -> None:
    # --version and the agent's sriovkit_build_info say sriovkit.__version__ (no package metadata read)
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert __version__ == pyproject["project"]["version"]


def _spec(tmp_path: Path, text: str) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    return spec


def test_sim_create_on_an_existing_host_is_one_line(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "pfs:\n  - {name: enp1s0f0, numVfs: 2}\n")
    cli = [sys.executable, "-m", "sriovkit.cli", "sim", "create", str(tmp_path / "h"), "--spec", str(spec)]
    assert subprocess.run(cli, capture_output=True, timeout=30).returncode == 0
    again = subprocess.run(cli, capture_output=True, text=True, timeout=30)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.count("\n") == 1 and "already a simulated host" in again.stderr
    blocked = tmp_path / "file"
    blocked.write_text("")
    under_a_file = subprocess.run([*cli[:-3], str(blocked / "h"), "--spec", str(spec)], capture_output=True,
                                  text=True, timeout=30)
    assert under_a_file.returncode == 2 and "Traceback" not in under_a_file.stderr
    assert under_a_file.stderr.count("\n") == 1


def test_explain_prints_no_python_syntax(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tmp_path, "pfs:\n  - {name: enp1s0f0, numVfs: 4, vfDrivers: {'3': vfio-pci}}\n")
    assert main(["sim", "create", str(tmp_path / "h"), "--spec", str(spec)]) == 0
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"resourceList": [
        {"resourceName": "net", "selectors": {"drivers": ["iavf", "ixgbevf"], "pfNames": ["enp1s0f0#0-1", "ens9#3"]}},
        {"resourceName": "rdma", "selectors": [{"devices": ["1017", "1018"]}, {"isRdma": True}]}]}))
    capsys.readouterr()
    assert main(["pools", "--host-root", str(tmp_path / "h"), "--config-file", str(config), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "drivers: vfio-pci is not iavf or ixgbevf" in out
    assert "pfNames: enp1s0f0#2 is not covered by enp1s0f0#0-1 or ens9#3" in out
    assert "devices: 1889 is not 1017 or 1018" in out
    reasons = [re.sub(r"selectors\[\d+\]", "", line) for line in out.splitlines() if "is not" in line]
    assert reasons and not [r for r in reasons if any(c in r for c in "[]'\"")]  # the path selectors[N] aside


def test_discover_table_shows_every_device_its_json_lists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tmp_path, "pfs:\n  - {name: enp1s0f0, numVfs: 2}\n"
                           "  - {name: enp3s0, totalVfs: 0, numVfs: 0, driver: vfio-pci}\n"
                           "  - {name: enp4s0, totalVfs: 8, numVfs: 0}\n")
    root = tmp_path / "h"
    assert main(["sim", "create", str(root), "--spec", str(spec)]) == 0
    capsys.readouterr()
    assert main(["discover", "--host-root", str(root), "-o", "json"]) == 0
    listed = {d["pciAddress"] for d in json.loads(capsys.readouterr().out)}
    assert main(["discover", "--host-root", str(root)]) == 0
    rows = {line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]}
    assert listed == rows and len(listed) == 5


def test_a_pool_of_4096_vfs_is_a_short_cell() -> None:
    ids = [f"0000:{bus:02x}:{dev:02x}.{fn}" for bus in range(0x20, 0x30) for dev in range(32) for fn in range(8)]
    assert len(ids) == 4096
    assert summarize_ids(ids) == "0000:20:00.0-0000:2f:1f.7 (4096)"
    holes = [i for n, i in enumerate(ids) if n % 3]  # every third missing: many runs
    cell = summarize_ids(holes)
    assert len(cell) < 300 and cell.endswith(f"... {len(holes) - 8} more")
    few = ["0000:11:00.0", "0000:11:00.1", "mlx5_core.sf.2"]
    assert summarize_ids(few) == "0000:11:00.0, 0000:11:00.1, mlx5_core.sf.2"


@pytest.mark.parametrize("command", [["pools"], ["agent"]])
def test_a_bad_resource_prefix_is_one_line_naming_the_flag(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"resourceList": [{"resourceName": f"r{i}", "selectors": {}} for i in range(3)]}))
    proc = subprocess.run([sys.executable, "-m", "sriovkit.cli", *command, "--config-file", str(config),
                           "--host-root", str(tmp_path), "--resource-prefix", "Not_A.Prefix"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == ["sriovctl: --resource-prefix 'Not_A.Prefix': must be a DNS subdomain such as "
                                        "intel.com"]


@pytest.mark.parametrize("argv", [
    ["injector", "--tls-cert-file", "{cert}", "--tls-private-key-file", "{cert}"],
    ["hotplug", "--node-name", "n", "--cni-bin-dir", "{dir}"],
])
def test_without_the_kube_extra_the_commands_needing_it_say_so(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "cert").write_text("x")
    args = [a.format(cert=tmp_path / "cert", dir=tmp_path) for a in argv]
    code = ("import sys; sys.modules['kubernetes'] = None  # as if the kube extra were not installed\n"
            "from sriovkit.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert "pip install 'sriovkit[kube]'" in line
