"""CNI_* validation: names that reach file paths are held to the spec's characters."""

from __future__ import annotations

import pytest

from sriovkit.cni.env import parse_env
from sriovkit.cni.spec import CniError, ErrorCode

GOOD = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "a" * 64, "CNI_NETNS": "/var/run/netns/cni-1",
        "CNI_IFNAME": "net1", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=p"}


def _exists(path: str) -> bool:
    return path == "/var/run/netns/cni-1"


def test_good_env() -> None:
    env = parse_env(GOOD, _exists)
    assert env.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert env.args["K8S_POD_NAME"] == "p"
    assert env.attachment == "a" * 64 + "-net1"


@pytest.mark.parametrize(("key", "value"), [
    ("CNI_CONTAINERID", "../../etc/passwd"), ("CNI_CONTAINERID", "a/b"), ("CNI_CONTAINERID", ""),
    ("CNI_CONTAINERID", "-leading"), ("CNI_CONTAINERID", "abc\n"), ("CNI_IFNAME", "eth0\n"),
    ("CNI_CONTAINERID", "a..b"), ("CNI_CONTAINERID", "a b"),
    ("CNI_IFNAME", "../x"), ("CNI_IFNAME", "a" * 16), ("CNI_IFNAME", ".."), ("CNI_IFNAME", "eth 0"),
    ("CNI_IFNAME", "eth0:1"), ("CNI_IFNAME", ""), ("CNI_NETNS", "relative/ns"), ("CNI_NETNS", ""),
])
def test_bad_values_rejected_naming_the_variable(key: str, value: str) -> None:
    with pytest.raises(CniError) as err:
        parse_env({**GOOD, key: value}, _exists)
    assert err.value.code == ErrorCode.INVALID_ENV
    assert key in err.value.details


def test_several_problems_at_once() -> None:
    with pytest.raises(CniError) as err:
        parse_env({**GOOD, "CNI_CONTAINERID": "../x", "CNI_IFNAME": "a/b"}, _exists)
    assert "CNI_CONTAINERID" in err.value.details and "CNI_IFNAME" in err.value.details


def test_netns_must_be_a_namespace_for_add_not_for_del() -> None:
    with pytest.raises(CniError) as err:
        parse_env({**GOOD, "CNI_NETNS": "/tmp/not-a-netns"}, _exists)
    assert err.value.code == ErrorCode.UNKNOWN_CONTAINER
    env = parse_env({**GOOD, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}, _exists)
    assert env.netns == ""
    assert parse_env({**GOOD, "CNI_COMMAND": "DEL", "CNI_NETNS": "/gone"}, _exists).netns == "/gone"


def test_unknown_command_and_commands_without_container() -> None:
    with pytest.raises(CniError) as err:
        parse_env({"CNI_COMMAND": "UPDATE"}, _exists)
    assert err.value.code == ErrorCode.INVALID_ENV
    for command in ("VERSION", "STATUS", "GC"):
        assert parse_env({"CNI_COMMAND": command}, _exists).command == command
