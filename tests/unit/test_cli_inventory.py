"""`sriovctl discover`, `pools` and `sim` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sriovkit.cli import main

SPEC = """
pfs:
  - name: enp1s0f0
    numVfs: 3
    vfDrivers: {"2": vfio-pci}
  - name: enp2s0f0
    vendor: "15b3"
    vfDevice: "1018"
    numVfs: 1
    numaNode: -1
"""


@pytest.fixture
def host(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    root = tmp_path / "host"
    assert main(["sim", "create", str(root), "--spec", str(spec)]) == 0
    return root


def write_config(tmp_path, data):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_pools_json_is_exactly_resource_to_sorted_ids(host, tmp_path, capsys):
    capsys.readouterr()
    cfg = write_config(tmp_path, {"resourceList": [
        {"resourceName": "net", "selectors": {"drivers": ["iavf"], "pfNames": ["enp1s0f0#0-1", "enp2s0f0"]}},
        {"resourceName": "dpdk", "resourcePrefix": "example.com", "selectors": {"drivers": ["vfio-pci"]}},
        {"resourceName": "none", "selectors": {"vendors": ["ffff"]}},
    ]})
    assert main(["pools", "--config-file", cfg, "--host-root", str(host), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "intel.com/net": ["0000:11:00.0", "0000:11:00.1", "0000:13:00.0"],
        "example.com/dpdk": ["0000:11:00.2"],
        "intel.com/none": [],
    }


def test_resource_prefix_flag(host, tmp_path, capsys):
    cfg = write_config(tmp_path, {"resourceList": [{"resourceName": "all"}]})
    capsys.readouterr()
    assert main(["pools", "--config-file", cfg, "--host-root", str(host), "-o", "json",
                 "--resource-prefix", "acme.io"]) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["acme.io/all"]


def test_explain_says_why_each_device_is_not_in_a_pool(host, tmp_path, capsys):
    cfg = write_config(tmp_path, {"resourceList": [{"resourceName": "net", "selectors": {"drivers": ["iavf"]}}]})
    capsys.readouterr()
    assert main(["pools", "--config-file", cfg, "--host-root", str(host), "--explain"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "0000:10:00.0: never offered: PF with 3 VFs: its VFs are offered, not the PF" in out
    assert "0000:11:00.0: in intel.com/net" in out
    i = out.index("0000:11:00.2: in no pool")
    assert out[i + 1] == "    intel.com/net: drivers: vfio-pci is not iavf"


def test_explain_omits_later_resources_for_a_device_already_in_a_pool(host, tmp_path, capsys):
    cfg = write_config(tmp_path, {"resourceList": [
        {"resourceName": "first", "selectors": {"drivers": ["iavf"]}},
        {"resourceName": "second", "selectors": {"drivers": ["iavf", "vfio-pci"]}}]})
    capsys.readouterr()
    assert main(["pools", "--config-file", cfg, "--host-root", str(host), "--explain"]) == 0
    out = capsys.readouterr().out.splitlines()
    i = out.index("0000:11:00.0: in intel.com/first")
    assert not out[i + 1].startswith("    "), "an earlier resource's take is not a reason worth showing"
    i = out.index("0000:11:00.2: in intel.com/second")
    assert out[i + 1] == "    intel.com/first: drivers: vfio-pci is not iavf"


def test_explain_json(host, tmp_path, capsys):
    cfg = write_config(tmp_path, {"resourceList": [{"resourceName": "net", "selectors": {"drivers": ["iavf"]}}]})
    capsys.readouterr()
    main(["pools", "--config-file", cfg, "--host-root", str(host), "--explain", "-o", "json"])
    data = json.loads(capsys.readouterr().out)
    assert data["0000:11:00.2"] == {"pool": None, "excluded": None,
                                    "rejectedBy": {"intel.com/net": "drivers: vfio-pci is not iavf"}}


def test_discover_json_and_table(host, capsys):
    capsys.readouterr()
    assert main(["discover", "--host-root", str(host), "-o", "json"]) == 0
    devices = {d["pciAddress"]: d for d in json.loads(capsys.readouterr().out)}
    assert devices["0000:10:00.0"]["numVfs"] == 3 and devices["0000:10:00.0"]["totalVfs"] == 64
    assert devices["0000:11:00.2"]["driver"] == "vfio-pci" and devices["0000:11:00.2"]["vfIndex"] == 2
    assert devices["0000:13:00.0"]["numaNode"] is None and devices["0000:13:00.0"]["pfName"] == "enp2s0f0"
    assert main(["discover", "--host-root", str(host)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["PCI", "ADDRESS", "ROLE", "VENDOR:DEVICE", "DRIVER", "INTERFACE", "PF", "VF",
                                "NUMA", "LINK", "VFS"]
    assert len(table) == 1 + 2 + 4


def test_host_root_from_environment(host, monkeypatch, capsys):
    monkeypatch.setenv("SRIOVKIT_HOST_ROOT", str(host))
    capsys.readouterr()
    assert main(["discover", "-o", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sriovkit", *args], capture_output=True, text=True)


def test_bad_config_exits_2_with_one_line_per_problem_and_no_traceback(host, tmp_path):
    cfg = write_config(tmp_path, {"resourceList": [{"resourceName": "a", "selectors": {"pfNames": ["eth0#5-2"],
                                                                                     "vendors": "8086"}}]})
    proc = run_cli("pools", "--config-file", cfg, "--host-root", str(host), "--strict")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"sriovctl: {cfg}: resourceList[0].selectors.vendors: must be a list of strings (value: \"8086\")",
    ]
    bad = write_config(tmp_path, {"resourceList": [{"resourceName": "a.b"}, {"resourceName": "c", "deviceType": 1}]})
    proc = run_cli("pools", "--config-file", bad, "--host-root", str(host))
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"sriovctl: {bad}: resourceList[1].deviceType: must be a string (value: 1)",
    ]


def test_what_upstream_ignores_is_a_warning_and_strict_refuses_it(host, tmp_path):
    cfg = write_config(tmp_path, {"ResourceList": [
        {"ResourceName": "a", "Selectors": {"Vendors": ["8086"], "pfNames": ["eth0#5-2"], "colour": "red"}},
        {"resourceName": "b", "selectors": {"vendors": "8086"}}]})
    proc = run_cli("pools", "--config-file", cfg, "--host-root", str(host), "--output", "json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert list(json.loads(proc.stdout)) == ["intel.com/a"]
    assert proc.stderr.splitlines() == [
        f"sriovctl: warning: {cfg}: resourceList[0].Selectors.colour: unknown selector: ignored, as upstream ignores "
        "it (value: \"red\")",
        f"sriovctl: warning: {cfg}: resourceList[0].Selectors.pfNames[0]: VF range '5-2' ends before it starts: "
        "matches no device, as upstream matches none (value: \"eth0#5-2\")",
        f"sriovctl: warning: {cfg}: resourceList[1].selectors.vendors: must be a list of strings: resource skipped, "
        "as upstream skips it (value: \"8086\")",
    ]
    strict = run_cli("pools", "--config-file", cfg, "--host-root", str(host), "--strict")
    assert strict.returncode == 2 and strict.stdout == "" and len(strict.stderr.splitlines()) == 3


@pytest.mark.parametrize("content", [b"\xff\xfe{}", b'{"resourceList": [{"resourceName": "\xff"}]}',
                                     b"[" * 5000 + b"]" * 5000, b'{"a":' * 2000 + b"1" + b"}" * 2000,
                                     b'{"resourceList": [{"resourceName": "a", "excludeTopology": NaN}]}',
                                     b"\x00", b""])
def test_a_config_that_cannot_be_read_is_one_line_and_exit_2(host, tmp_path, content):
    cfg = tmp_path / "config.json"
    cfg.write_bytes(content)
    proc = run_cli("pools", "--config-file", str(cfg), "--host-root", str(host))
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sriovctl: {cfg}: "), lines


def test_missing_host_root_is_a_clear_error(tmp_path):
    cfg = write_config(tmp_path, {"resourceList": []})
    proc = run_cli("pools", "--config-file", cfg, "--host-root", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no PCI devices directory" in proc.stderr


def test_sim_spec_errors_name_file_and_field(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("pfs:\n  - name: eth0\n    vendor: xyz\n    numVfs: 999\n")
    proc = run_cli("sim", "create", str(tmp_path / "h"), "--spec", str(spec))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"sriovctl: {spec}: pfs[0].vendor:")
    assert lines[1].startswith(f"sriovctl: {spec}: pfs[0].numVfs:")
    assert not (tmp_path / "h").exists()


@pytest.mark.parametrize(("name", "content"), [
    ("deep.json", b"[" * 2000 + b"]" * 2000), ("deep.yaml", b"pfs:" + b" [" * 2000), ("nan.json", b'{"pfs": NaN}'),
    ("bytes.json", b"\xff\xfe"), ("missing.json", None),
])
def test_sim_spec_that_cannot_be_read_is_one_line(tmp_path, name, content):
    spec = tmp_path / name
    if content is not None:
        spec.write_bytes(content)
    proc = run_cli("sim", "create", str(tmp_path / "h"), "--spec", str(spec))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"sriovctl: {spec}: ")
    assert not (tmp_path / "h").exists()


def test_sim_destroy(host, capsys):
    assert main(["sim", "destroy", str(host)]) == 0
    assert not host.exists()


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    spec = tmp_path / "big.yaml"
    spec.write_text("pfs:\n  - name: enp9s0f0\n    totalVfs: 256\n    numVfs: 256\n")
    root = tmp_path / "big"
    assert main(["sim", "create", str(root), "--spec", str(spec)]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "sriovkit", "discover", "--host-root", str(root), "-o", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10)  # like `| head -c 10`: read a little, then hang up
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 141
    assert stderr == ""
