"""sriovkit's decoder against Go's own encoding/json, on hostile structured documents.

tests/reliability/gojson_peer is a small Go program (built here with the machine's Go toolchain,
cached under /var/tmp) that decodes each document into structs shaped like upstream's: the device
plugin's ResourceConfList with parseObjectOrSlice for the selectors, and sriov-cni's NetConf. For
every generated document both sides must agree on whether Go refuses it and on every field
decoded: key folding, duplicates, merging, null, number ranges, invalid UTF-8, wrong types.
The one divergence on purpose: documents nested deeper than gojson.MAX_DEPTH, which Go reads up
to 10000 levels and sriovkit refuses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sriovkit import gojson
from sriovkit.cni import netconf
from sriovkit.resources import config
from tests.reliability import jsonfuzz as jf
from tests.reliability.test_fuzz_config import SELECTOR_SCHEMA

PEER = Path(__file__).parent / "gojson_peer"
EXAMPLES = int(os.environ.get("SRIOVKIT_FUZZ_EXAMPLES", "300"))
RESOURCE_SCHEMA: jf.Schema = {  # upstream's fields only: sriovkit's own (allocatePolicy...) Go ignores
    "resourceName": st.sampled_from(["a", "b"]), "resourcePrefix": st.sampled_from(["intel.com", ""]),
    "deviceType": st.sampled_from(["netDevice", "accelerator", "auxNetDevice", "", "gpu"]),
    "excludeTopology": st.booleans(), "selectors": SELECTOR_SCHEMA, "SelectorObjs": st.just([]),
    "additionalInfo": st.just(jf.Obj([("*", jf.Obj([("k", "v")]))])),
}
CONFIG_SCHEMA: jf.Schema = {"resourceList": [RESOURCE_SCHEMA]}
UPSTREAM_NETCONF = {k: v for k, v in jf.netconf_schema(st.sampled_from(["0000:11:00.1"])).items()
                    if k not in ("pciBusID", "driver", "runtimeConfig")}
UPSTREAM_NETCONF["runtimeConfig"] = {"mac": st.just("02:00:00:00:00:02")}


def _go() -> str | None:
    for candidate in (shutil.which("go"), "/usr/local/go/bin/go", "/usr/lib/go-1.23/bin/go"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def peer() -> Iterator[subprocess.Popen[bytes]]:
    go = _go()
    if go is None:
        pytest.skip("no Go toolchain (./dev setup installs one)")
    source = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(PEER.iterdir()) if p.is_file())).hexdigest()
    binary = Path(f"/var/tmp/sriovkit-gojsonpeer-{source[:16]}")
    if not binary.exists():
        tmp = binary.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run([go, "build", "-o", str(tmp), "."], cwd=PEER, check=True,
                       env={**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"})
        tmp.rename(binary)
    proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=10)


def ask(proc: subprocess.Popen[bytes], kind: str, doc: bytes) -> Any:
    proc.stdin.write(f"{kind} {base64.b64encode(doc).decode()}\n".encode())  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    return json.loads(proc.stdout.readline())  # type: ignore[union-attr]


def _too_deep(doc: bytes) -> bool:
    return gojson.nesting_depth(doc.decode("utf-8", "replace")) > gojson.MAX_DEPTH


def _parsed(doc: bytes) -> Any:
    try:
        return gojson.parse(doc).value
    except gojson.JsonSyntaxError:
        return _REFUSED


_REFUSED = object()


def _norm(value: Any) -> Any:
    """Both sides' decoded values compared as Go's json.Marshal shows them: keys folded, empty
    values (omitempty) dropped."""
    if isinstance(value, dict):
        return {gojson.fold(k): _norm(v) for k, v in value.items() if v not in (None, "", False, [], {})}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def ours_config(doc: bytes) -> Any:
    tree = _parsed(doc)
    if tree is _REFUSED:
        return {"ok": False}
    value, report = gojson.decode(config._CONFIG, tree)
    if report.problems:
        return {"ok": False}
    return {"ok": True, "resources": [_resource(rc or {}) for rc in (value or {}).get("resourceList") or []]}


def _resource(rc: dict[str, Any]) -> dict[str, Any]:
    kind = rc.get("deviceType") or "netDevice"
    raw = rc.get("selectors")
    if raw is None:
        selectors: Any = "absent"
    elif kind not in {t.value for t in config.DeviceType}:
        selectors = "badtype"
    else:
        schema = config._SELECTOR_STRUCTS[config.DeviceType(kind)]
        many = isinstance(raw, list) and not isinstance(raw, gojson.Pairs)
        decoded, report = gojson.decode(gojson.Slice(gojson.Ptr(schema)) if many else gojson.Ptr(schema), raw)
        ok = isinstance(raw, gojson.Pairs | list) and not report.problems and (not many or decoded)
        selectors = (decoded if many else [decoded]) if ok else "skipped"
    return {"resourcePrefix": rc.get("resourcePrefix", ""), "resourceName": rc.get("resourceName", ""),
            "deviceType": rc.get("deviceType", ""), "excludeTopology": rc.get("excludeTopology", False),
            "additionalInfo": rc.get("additionalInfo"), "selectors": selectors}


def ours_netconf(doc: bytes) -> Any:
    tree = _parsed(doc)
    if tree is _REFUSED:
        return {"ok": False}
    value, report = gojson.decode(netconf.NETCONF, tree)
    if report.problems:
        return {"ok": False}
    v = value or {}
    attachments = v.get("cni.dev/valid-attachments")
    return {"ok": True, "conf": {
        "cniVersion": v.get("cniVersion", ""), "name": v.get("name", ""), "type": v.get("type", ""),
        "ipamType": (v.get("ipam") or {}).get("type", ""), "mac": v.get("mac", ""), "mtu": v.get("mtu"),
        "vlan": v.get("vlan"), "vlanQoS": v.get("vlanQoS"), "vlanProto": v.get("vlanProto"),
        "deviceID": v.get("deviceID", ""), "min_tx_rate": v.get("min_tx_rate"), "max_tx_rate": v.get("max_tx_rate"),
        "spoofchk": v.get("spoofchk", ""), "trust": v.get("trust", ""), "link_state": v.get("link_state", ""),
        "runtimeMac": (v.get("runtimeConfig") or {}).get("mac", ""), "logLevel": v.get("logLevel", ""),
        "logFile": v.get("logFile", ""), "nameservers": (v.get("dns") or {}).get("nameservers"),
        "attachments": [{"containerID": (a or {}).get("containerID", ""), "ifname": (a or {}).get("ifname", "")}
                        for a in attachments] if attachments is not None else None,
    }}


def _agree(proc: subprocess.Popen[bytes], kind: str, doc: bytes) -> None:
    if _too_deep(doc):
        assert ours_config(doc)["ok"] is False and ours_netconf(doc)["ok"] is False
        return
    theirs = ask(proc, kind, doc)
    ours = ours_config(doc) if kind == "config" else ours_netconf(doc)
    assert ours["ok"] == theirs["ok"], f"Go {'accepts' if theirs['ok'] else 'refuses'} {doc[:300]!r}"
    assert _norm(ours) == _norm(theirs), doc[:300]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=jf.hostile_bytes(jf.document(CONFIG_SCHEMA)))
def test_config_json_decodes_as_go_decodes_it(peer: subprocess.Popen[bytes], doc: bytes) -> None:
    _agree(peer, "config", doc)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=jf.hostile_bytes(jf.document(UPSTREAM_NETCONF)))
def test_netconf_decodes_as_go_decodes_it(peer: subprocess.Popen[bytes], doc: bytes) -> None:
    if _parsed(doc) is None:
        return  # `null`: Go leaves the struct empty; sriovkit, like the CNI library, refuses it (no name)
    _agree(peer, "netconf", doc)


@pytest.mark.parametrize("doc", [
    b'{"resourceList":[{"resourceName":"a","resourceName":"b","ResourceName":"c"}]}',
    b'{"resourceList":[{"resourceName":"a","deviceType":"accelerator"}],"resourceList":[{"resourceName":"b"}]}',
    '{"resourceList":[{"re\u017fourceName":"x","selectors":{"lin\u212aTypes":["a"],"\u0131srdma":true}}]}'.encode(),
    b'{"resourceList":[{"resourceName":"\xff\xfe","selectors":[{"vendors":["a"]},null]}]}',
    b'{"resourceList":[{"selectors":{"vendors":"8086"}},{"selectors":[]},{"selectors":5},{"selectors":null}]}',
    b'{"resourceList":[{"SelectorObjs":[1e400]}]}', b'{"resourceList":[{"SelectorObjs":5}]}',
    b'{"resourceList":null}', b"null", b"[]", b'{"resourceList":[null]}',
])
def test_known_cases_agree_with_go(peer: subprocess.Popen[bytes], doc: bytes) -> None:
    _agree(peer, "config", doc)


@pytest.mark.parametrize("doc", [
    b'{"Vlan":5,"vlan":null,"VLANQOS":-0,"MAC":"x","mtu":1.0}', b'{"vlan":9223372036854775808}',
    b'{"OrigVfState":{"LinkState":-0}}', b'{"OrigVfState":{"LinkState":4294967295}}',
    b'{"runtimeConfig":"x"}', b'{"runtimeConfig":{"MAC":"m","other":[1e400]}}', b'{"prevResult":{"a":1e400}}',
    b'{"capabilities":{"mac":1}}', b'{"cni.dev/valid-attachments":[{"containerID":5}]}',
    b'{"IPAM":{"TYPE":"host-local","x":NaN}}', b'{"ipam":{"type":"\\ud800"}}',
])
def test_known_netconf_cases_agree_with_go(peer: subprocess.Popen[bytes], doc: bytes) -> None:
    _agree(peer, "netconf", doc)
