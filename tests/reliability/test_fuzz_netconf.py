"""Hostile netconfs and policies, shaped like the real thing (tests/reliability/jsonfuzz.py): the
decoder answers with a config or the spec's error (code 6 for what is not a JSON object, 7 for
an invalid config), one line, never another exception; a case-varied copy reads the same.
The whole CNI path with these inputs (and the node left unchanged) is test_hostile.py's."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sriovkit.cni.netconf import canonical, decode, parse_netconf, read_version
from sriovkit.cni.spec import CniError, ErrorCode
from sriovkit.provision.policy import PolicyError, parse_policy
from tests.reliability import jsonfuzz as jf

NETCONF_SCHEMA = jf.netconf_schema(st.sampled_from(["0000:11:00.1", "11:00.2", "0000:3b:02.4"]))

POLICY_SCHEMA: jf.Schema = {
    "policies": [{
        "name": st.sampled_from(["a", "b"]), "resourceName": st.just("net"), "numVfs": st.integers(0, 8),
        "deviceType": st.sampled_from(["netdevice", "vfio-pci"]), "mtu": st.integers(68, 9000),
        "nicSelector": {"pfNames": st.lists(st.sampled_from(["eth0", "eth0#0-1"]), max_size=2),
                        "rootDevices": st.lists(st.just("0000:10:00.0"), max_size=1),
                        "vendor": st.just("8086"), "deviceID": st.just("10c9")},
    }],
    "allowDefaultRoutePf": st.booleans(),
}


def _one_line(text: str) -> bool:
    return "\n" not in text and "Traceback" not in text


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=jf.hostile_bytes(jf.document(NETCONF_SCHEMA)), need_device=st.booleans())
def test_hostile_netconf_bytes_answer_a_config_or_the_spec_error(raw: bytes, need_device: bool) -> None:
    read_version(raw)  # never raises
    try:
        conf = parse_netconf(decode(raw), need_device=need_device)
    except CniError as exc:
        assert exc.code in (ErrorCode.DECODE_FAILURE, ErrorCode.INVALID_CONFIG), exc
        assert _one_line(exc.msg) and _one_line(exc.details), exc
        return
    assert all(_one_line(w) for w in conf.warnings)
    if conf.min_tx_rate is not None:
        assert 0 <= conf.min_tx_rate < 2 ** 32 and 0 <= (conf.max_tx_rate or 0) < 2 ** 32
    if conf.vlan is not None:
        assert 0 <= conf.vlan <= 4094 and conf.vlan_qos is not None and 0 <= conf.vlan_qos <= 7
    if conf.mac is not None:
        assert conf.mac != "00:00:00:00:00:00" and not int(conf.mac[:2], 16) & 1


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_case_varied_netconf_reads_the_same(data: st.DataObject) -> None:
    doc = data.draw(jf.document(NETCONF_SCHEMA, mistakes=False))
    varied = jf.case_varied(doc, NETCONF_SCHEMA, data.draw)
    assert canonical(jf.emit(varied)) == canonical(jf.emit(doc))
    try:
        original = parse_netconf(jf.emit(doc))
    except CniError as exc:
        try:
            parse_netconf(jf.emit(varied))
        except CniError as again:
            assert (again.code, again.details) == (exc.code, exc.details)
            return
        raise AssertionError("the case-varied copy was accepted, the original refused") from None
    assert parse_netconf(jf.emit(varied)) == original


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=jf.hostile_bytes(jf.document(POLICY_SCHEMA)), as_yaml=st.booleans(), strict=st.booleans())
def test_hostile_policies_answer_a_policy_or_one_line_per_problem(raw: bytes, as_yaml: bool, strict: bool) -> None:
    source = "policy.yaml" if as_yaml else "policy.json"
    warnings: list[str] = []
    try:
        parse_policy(raw, source, strict=strict, warn=warnings.append)
    except PolicyError as exc:
        assert exc.problems and all(p.startswith(f"{source}: ") and _one_line(p) for p in exc.problems), exc.problems
        return
    assert all(w.startswith(f"{source}: ") and _one_line(w) for w in warnings)
    assert not (strict and warnings)
