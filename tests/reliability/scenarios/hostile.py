"""4. Hostile input: hypothesis-generated CNI env and stdin through run_cni."""


from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sriovkit.cni.plugin import run_cni
from sriovkit.cni.spec import ErrorCode
from tests.reliability import jsonfuzz
from tests.reliability.scenarios.rig import (
    Outcome,
    answer,
    is_spec_error,
    pods,
    sim_node,
)
from tests.support.cni_host import Node
from tests.support.leaks import leak_report

# -- 4. hostile input ---------------------------------------------------------------------------

HOSTILE_NAMES = ["..", ".", "../x", "a/b", "/abs", "a\0b", "x" * 300, "-lead", ".hidden", "a..b", "é", " ", "a b",
                 "net1\n", "$(reboot)", "*"]


def _fuzz_strategies(node: Node, pod: str) -> Any:
    from hypothesis import strategies as st

    tmp = node.tmp
    regular = tmp / "regular-file"
    regular.write_text("")
    fifo = tmp / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    texts = st.text(max_size=24)
    container = st.one_of(st.sampled_from(["c1", "fz.1", "A-b_c", *HOSTILE_NAMES]), texts)
    ifname = st.one_of(st.sampled_from(["net1", "eth0", "x" * 15, "x" * 16, "b-c", *HOSTILE_NAMES]), texts)
    netns = st.sampled_from([pod, pod, str(regular), str(tmp), str(fifo), "/proc/self/ns/mnt", "/proc/self/ns/net",
                             "/nonexistent/ns", "relative/ns", "", f"{pod}/..", "/dev/null"])
    devices = st.one_of(st.sampled_from([node.vf(0), node.vf(1), node.host.pf_address(0), node.vf(0).upper(),
                                         "../" + node.vf(0), node.vf(0) + "/../..", "0000:ff:1f.7", "\0", "x" * 300,
                                         "11:00.1"]), texts)
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.sampled_from(["on", "off", "maybe"]), texts)
    ipam = st.one_of(st.none(), st.fixed_dictionaries(
        {"type": st.sampled_from(["host-local", "static", "", "../../bin/sh", "/bin/sh", "no-such"])},
        optional={"ranges": st.just([[{"subnet": "10.89.0.0/24"}]]), "dataDir": st.just(str(node.ipam_dir)),
                  "addresses": st.just([{"address": "10.89.1.5/24"}])}))
    runtime = st.fixed_dictionaries({}, optional={
        "mac": st.one_of(st.sampled_from(["02:00:00:00:12:34", "ff:ff:ff:ff:ff:ff", "zz"]), texts),
        "CNIDeviceInfoFile": st.sampled_from([str(tmp / "devinfo.json"), "relative", str(tmp / "../x/../devinfo"),
                                              str(tmp / "no-dir" / "f")])})
    log_files = st.one_of(st.sampled_from([str(tmp / "cni.log"), str(fifo), str(tmp), "relative.log", "a\0b",
                                           "/dev/null",
                                           str(regular) + "/x"]), scalars)
    conf = st.fixed_dictionaries(
        {"cniVersion": st.sampled_from(["1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.2.0", "9.9.9", ""]),
         "name": st.sampled_from(["fuzz", ""]), "type": st.just("sriov")},
        optional={"deviceID": devices, "vlan": scalars, "vlanQoS": scalars, "vlanProto": scalars, "mac": scalars,
                  "spoofchk": scalars, "trust": scalars, "link_state": scalars, "min_tx_rate": scalars,
                  "max_tx_rate": scalars, "mtu": scalars, "ipam": ipam, "runtimeConfig": runtime,
                  "logLevel": scalars, "logFile": log_files,
                  "prevResult": st.one_of(st.none(), st.just({"cniVersion": "1.0.0"}))})
    plausible = _plausible_conf(node, scalars, ipam, runtime, log_files)
    # shaped like a netconf, with mistakes at every level: case-varied and duplicate keys, wrong
    # types, huge and non-finite numbers, deep nesting, bytes that are not UTF-8
    shaped = jsonfuzz.hostile_bytes(jsonfuzz.document(jsonfuzz.netconf_schema(devices)))
    stdin = st.one_of(plausible, plausible, plausible, shaped, shaped, conf.map(lambda c: json.dumps(c).encode()),
                      st.binary(max_size=64),
                      st.sampled_from([b"", b"null", b"[]", b'"x"', b"{", b"\xff\xfe{}", b'{"cniVersion": 1}']))
    optional_env = {"CNI_PATH": st.sampled_from(["/usr/lib/cni", "", "/nonexistent", "relative"]),
                    "CNI_ARGS": st.one_of(texts, st.sampled_from(["IgnoreUnknown=1;MAC=02:00:00:00:00:09", "MAC=zz",
                                                                  "K8S_POD_NAME=p;;;=", "IgnoreUnknown"]))}
    hostile_env = st.fixed_dictionaries(
        {"CNI_COMMAND": st.sampled_from(["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "add", "", "BOGUS"]),
         "CNI_CONTAINERID": container, "CNI_IFNAME": ifname, "CNI_NETNS": netns}, optional=optional_env)
    sane_env = st.fixed_dictionaries(
        {"CNI_COMMAND": st.sampled_from(["ADD", "ADD", "ADD", "DEL", "CHECK"]),
         "CNI_CONTAINERID": st.sampled_from(["c1", "fz.1"]), "CNI_IFNAME": st.sampled_from(["net1", "eth0"]),
         "CNI_NETNS": st.just(pod)}, optional=optional_env)
    return st.one_of(sane_env, sane_env, hostile_env), stdin


def _plausible_conf(node: Node, scalars: Any, ipam: Any, runtime: Any, log_files: Any) -> Any:
    """Configs that are mostly right: the fuzzing reaches the device, switch and IPAM steps."""
    from hypothesis import strategies as st

    def mostly(valid: Any) -> Any:
        return st.one_of(valid, valid, valid, scalars)

    conf = st.fixed_dictionaries(
        {"cniVersion": st.sampled_from(["1.1.0", "1.0.0", "0.4.0", "0.3.1"]), "name": st.just("fuzz"),
         "type": st.just("sriov"), "deviceID": mostly(st.sampled_from([node.vf(0), node.vf(1), node.vf(2)]))},
        optional={"vlan": mostly(st.integers(0, 4095)), "vlanQoS": mostly(st.integers(0, 7)),
                  "vlanProto": mostly(st.sampled_from(["802.1q", "802.1Q", "802.1ad"])),
                  "mac": mostly(st.sampled_from(["02:00:00:00:12:34", "02:AA:bb:00:00:01"])),
                  "spoofchk": mostly(st.sampled_from(["on", "off"])), "trust": mostly(st.sampled_from(["on", "off"])),
                  "link_state": mostly(st.sampled_from(["auto", "enable", "disable"])),
                  "min_tx_rate": mostly(st.integers(0, 100)), "max_tx_rate": mostly(st.integers(0, 1000)),
                  "mtu": mostly(st.integers(68, 9000)), "ipam": ipam, "runtimeConfig": runtime,
                  "logFile": log_files, "logLevel": st.sampled_from(["debug", "info", "error", "panic"])})
    return conf.map(lambda c: json.dumps(c).encode())


def fuzz_cni(tmp: Path, examples: int) -> Outcome:
    """Hypothesis-generated env and stdin through `run_cni`: the answer is always the spec's
    (error JSON with a code and message, never the internal-error code), and nothing on the
    host changes unless the call succeeded (a successful ADD is DELeted and must restore all)."""
    from hypothesis import HealthCheck, given, settings

    out = Outcome("hostile input: fuzzed CNI env + stdin through run_cni")
    with sim_node(tmp) as node, pods() as make_pod:
        pod = make_pod()
        before = node.views()
        env_st, stdin_st = _fuzz_strategies(node, pod)
        extra = (node.tmp / "devinfo.json",)

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(env_st, stdin_st)
        def one(env: dict[str, str], stdin: bytes) -> None:
            out.tried += 1
            problem = _fuzz_case(node, env, stdin)
            if problem is None:
                problem = "; ".join(leak_report(node, before, extra_files=extra)) or None
                if problem:
                    _reset(node)
            assert problem is None, problem

        try:
            one()
        except AssertionError as exc:
            out.fail("falsifying example", str(exc).splitlines()[0][:400])
        except Exception as exc:
            out.fail("falsifying example", repr(exc)[:400])
        out.leaks += leak_report(node, before, extra_files=extra)
    return out


def _fuzz_case(node: Node, env: dict[str, str], stdin: bytes) -> str | None:
    full = {**env, "CNI_PATH": env.get("CNI_PATH", "/usr/lib/cni")}
    stdout, code = run_cni(full, stdin, node.ctx)
    if code != 0:
        data = answer(stdout)
        if not is_spec_error(stdout) or not stdout.endswith(b"\n") or stdout.count(b"\n") != 1:
            return f"not the spec's error JSON: {stdout[:200]!r} for {env!r} {stdin[:200]!r}"
        if data["code"] == ErrorCode.INTERNAL:
            return f"internal error (a bug): {data} for {env!r} {stdin[:300]!r}"
        return None
    if env["CNI_COMMAND"] == "ADD":
        undo = run_cni({**full, "CNI_COMMAND": "DEL"}, stdin, node.ctx)
        if undo != (b"", 0):
            return f"DEL after a successful ADD answered {undo!r} for {env!r} {stdin[:300]!r}"
    return None


def _reset(node: Node) -> None:
    """After a case that left something behind: DEL every record, so the next case starts clean."""
    for record in node.ctx.store.records(pending=True):
        run_cni(node.env("DEL", record.netns, container=record.container_id, ifname=record.ifname),
                record.config.encode() or b"{}", node.ctx)
