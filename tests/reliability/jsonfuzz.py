"""Hypothesis strategies for hostile *structured* JSON, as bytes.

Not only random text: documents shaped like a known input (config.json, a netconf, a policy) whose
fields are, at every level, given in case-varied spellings (Go's fold runes included), given
twice, of the wrong JSON type, huge, non-finite, negative zero, nested thousands deep, or holding
bytes that are not UTF-8. A `Schema` names the fields an input knows and what a valid value
looks like; `document(schema)` draws documents mostly right and wrong in one place or several.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st


class Obj(list):  # type: ignore[type-arg]
    """A JSON object as (key, value) pairs: duplicates and spellings are kept for `emit`."""


@dataclass(frozen=True)
class Raw:
    """Bytes written as they are: a literal Python's json cannot write (NaN, -0, 1e400) or a
    string holding bytes that are not UTF-8."""

    data: bytes


@dataclass(frozen=True)
class Deep:
    """`value` inside `depth` arrays or objects, written without recursing."""

    depth: int
    value: Any
    objects: bool = False


def emit(value: Any) -> bytes:
    """A document as JSON bytes (iterative: deep documents do not recurse here either)."""
    out: list[bytes] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            out.append(item)
        elif isinstance(item, Raw):
            out.append(item.data)
        elif isinstance(item, Deep):
            opening, closing = (b'{"a":', b"}") if item.objects else (b"[", b"]")
            stack.append(closing * item.depth)
            stack.append(item.value)
            stack.append(opening * item.depth)
        elif isinstance(item, Obj):
            parts: list[Any] = [b"{"]
            for i, (key, member) in enumerate(item):
                if i:
                    parts.append(b",")
                parts += [_key(key), b":", member]
            parts.append(b"}")
            stack.extend(reversed(parts))
        elif isinstance(item, list):
            parts = [b"["]
            for i, member in enumerate(item):
                if i:
                    parts.append(b",")
                parts.append(member)
            parts.append(b"]")
            stack.extend(reversed(parts))
        else:
            out.append(json.dumps(item).encode())
    return b"".join(out)


def _key(key: Any) -> bytes:
    return key.data if isinstance(key, Raw) else json.dumps(key).encode()


# -- values ------------------------------------------------------------------------------------
ODD_LITERALS = [b"NaN", b"Infinity", b"-Infinity", b"-0", b"-0.0", b"1.0", b"1e2", b"1E400", b"-1e400",
                b"18446744073709551616", b"4294967296", b"9223372036854775808", b"-9223372036854775809",
                b"1" + b"0" * 5000, b"0.000001", b"01", b"+1", b".5", b"1.", b"0x10"]
BAD_STRINGS = [b'"\xff"', b'"\xc3"', b'"\xed\xa0\x80"', b'"\\ud800"', b'"\\udc00x"', b'"a\x01b"', b'"\xf4\x90\x80\x80"',
               b'"\\u0000"', b'"\xef\xbb\xbf"', b'"\\"', b'"tab\there"']
STRUCTURE = [b"[", b"{", b"}", b"]", b'{"a"}', b"[1,]", b'{"a":1,}', b"", b" ", b"\xef\xbb\xbf{}", b"{}{}", b"nul"]


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                     st.sampled_from(ODD_LITERALS + BAD_STRINGS).map(Raw))


def any_json(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any JSON value, odd literals and bad strings included, sometimes nested very deep."""
    nested = st.recursive(scalars(), lambda inner: st.lists(inner, max_size=3)
                          | st.lists(st.tuples(st.text(max_size=6), inner), max_size=3).map(Obj),
                          max_leaves=max_leaves)
    deep = st.builds(Deep, st.sampled_from([2, 255, 256, 257, 1000, 20_000]), nested, st.booleans())
    return st.one_of(nested, nested, nested, deep)


def wrong_type_of(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value of (most likely) another JSON type than the valid ones, or a valid one."""
    return st.one_of(valid, any_json())


# -- keys --------------------------------------------------------------------------------------
_GO_FOLDS = {"s": "\u017f", "S": "\u017f", "k": "\u212a", "K": "\u212a"}  # the only non-ASCII runes Go folds to ASCII


_NOT_FOLDS = {"i": "\u0131", "I": "\u0130", "f": "\ufb00"}


@st.composite
def spelling(draw: Any, key: str, matching: bool = True) -> str:
    """`key` as written, or in another case Go still matches (its non-ASCII folds included); not
    `matching`: also look-alikes Go does not match (dotless i, ligatures), which are unknown keys."""
    ways = ["exact", "exact", "upper", "lower", "title", "random", "go-fold"] + ([] if matching else ["not-a-fold"])
    how = draw(st.sampled_from(ways))
    if how == "exact":
        return key
    if how == "upper":
        return key.upper()
    if how == "lower":
        return key.lower()
    if how == "title":
        return key[:1].upper() + key[1:]
    if how == "go-fold":
        return "".join(_GO_FOLDS.get(c, c) if draw(st.booleans()) else c for c in key)
    if how == "not-a-fold" and _NOT_FOLDS.keys() & set(key):  # looks alike, Go does not match it: an unknown key
        return "".join(_NOT_FOLDS.get(c, c) for c in key)
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in key)


# -- documents shaped like a known input ---------------------------------------------------------
Schema = dict[str, Any]  # key -> strategy of a valid value, or a nested Schema, or [Schema] (a list of them)


def valid_value(spec: Any) -> st.SearchStrategy[Any]:
    if isinstance(spec, dict):
        return document(spec, mistakes=False)
    if isinstance(spec, list):
        return st.lists(valid_value(spec[0]), min_size=1, max_size=3)
    return spec


@st.composite
def document(draw: Any, schema: Schema, *, mistakes: bool = True) -> Obj:
    """An object of `schema`: some fields, spelled in any case Go matches; with `mistakes`, some
    given twice, of the wrong type, or unknown fields besides, at this level and below."""
    pairs = Obj()
    for key in draw(st.lists(st.sampled_from(sorted(schema)), unique=True, max_size=len(schema))):
        spec = schema[key]
        if mistakes and isinstance(spec, dict | list):
            inner = document(spec, mistakes=True) if isinstance(spec, dict) else st.lists(
                document(spec[0], mistakes=True), max_size=3)
            value = draw(st.one_of(inner, inner, inner, any_json()))
        elif mistakes:
            value = draw(st.one_of(valid_value(spec), valid_value(spec), wrong_type_of(valid_value(spec))))
        else:
            value = draw(valid_value(spec))
        spelled = draw(spelling(key, matching=False)) if mistakes else key
        pairs.append((spelled, value))
        if mistakes and draw(st.integers(0, 9)) == 0:  # the same key again, maybe spelled otherwise
            pairs.append((draw(spelling(key, matching=False)), draw(st.one_of(valid_value(spec), any_json()))))
    if mistakes and draw(st.integers(0, 4)) == 0:
        pairs.append((draw(st.one_of(st.text(max_size=8), st.sampled_from(BAD_STRINGS).map(Raw))), draw(any_json())))
    return pairs


def case_varied(value: Any, schema: Any, draw: Any) -> Any:
    """The same document with every field of `schema` respelled in a case Go matches (map keys,
    which Go never folds, and everything else unchanged)."""
    if isinstance(schema, list):
        return [case_varied(v, schema[0], draw) for v in value] if isinstance(value, list) else value
    if not isinstance(schema, dict) or not isinstance(value, Obj):
        return value
    return Obj((draw(spelling(k)) if k in schema else k, case_varied(v, schema.get(k), draw)) for k, v in value)


def hostile_bytes(doc: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """A shaped document as bytes, sometimes cut short, spliced with broken structure, or nested deep."""
    return st.one_of(
        doc.map(emit), doc.map(emit), doc.map(emit),
        st.tuples(doc.map(emit), st.integers(0, 200)).map(lambda t: t[0][: t[1]]),
        st.tuples(doc.map(emit), st.sampled_from(STRUCTURE)).map(lambda t: t[0] + t[1]),
        st.builds(Deep, st.sampled_from([257, 1000, 20_000]), doc, st.booleans()).map(emit),
        st.sampled_from(STRUCTURE + BAD_STRINGS + ODD_LITERALS),
        st.binary(max_size=64),
    )


def netconf_schema(devices: st.SearchStrategy[str]) -> Schema:
    """The sriov netconf's fields (upstream's and sriovkit's), `devices` as deviceID values."""
    vf = devices
    on_off = st.sampled_from(["on", "off", "ON"])
    return {
        "cniVersion": st.sampled_from(["1.0.0", "0.4.0", "1.1.0"]), "name": st.just("fuzz"), "type": st.just("sriov"),
        "deviceID": vf, "pciBusID": vf, "vlan": st.integers(0, 4094), "vlanQoS": st.integers(0, 7),
        "vlanProto": st.sampled_from(["802.1Q", "802.1ad"]), "mac": st.sampled_from(["02:00:00:00:00:01"]),
        "spoofchk": on_off, "trust": on_off, "link_state": st.sampled_from(["auto", "enable", "disable"]),
        "min_tx_rate": st.integers(0, 100), "max_tx_rate": st.integers(100, 2 ** 32 - 1), "mtu": st.integers(68, 9000),
        "logLevel": st.sampled_from(["debug", "info"]), "logFile": st.just("/tmp/x.log"),
        "driver": st.sampled_from(["vfio-pci"]),
        "ipam": {"type": st.sampled_from(["host-local", "static"])},  # the rest is the IPAM plugin's
        "runtimeConfig": {"mac": st.just("02:00:00:00:00:02"), "deviceID": vf,
                          "CNIDeviceInfoFile": st.just("/var/run/k8s.cni.cncf.io/devinfo/x.json")},
        "capabilities": st.just(Obj([("mac", True)])),
        "dns": {"nameservers": st.lists(st.just("10.0.0.1"), max_size=2), "domain": st.just("x")},
        "prevResult": st.just(Obj([("cniVersion", "1.0.0")])),
        "cni.dev/valid-attachments": [{"containerID": st.just("c1"), "ifname": st.just("net1")}],
    }
