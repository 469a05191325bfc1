"""The shared decoder reads JSON as Go's encoding/json reads it into upstream's structs.

Each expectation here was checked against Go 1.26's encoding/json (the differential fuzz test in
tests/reliability/test_fuzz_gojson.py keeps checking it against a real Go build)."""

from __future__ import annotations

from typing import Any

import pytest

from sriovkit import gojson
from sriovkit.gojson import Bool, Field, Int, Map, Ptr, Raw, Slice, String, Struct

SEL = gojson.struct(Field("vendors", Slice(String())), Field("isRdma", Bool()))
RC = gojson.struct(
    Field("resourceName", String()), Field("deviceType", String()), Field("vlan", Ptr(Int())),
    Field("u", Int(16, signed=False)), Field("i", Int()), Field("s", SEL), Field("l", Slice(SEL)),
    Field("m", Map(Map(String()))), Field("r", Raw()),
)
LIST = gojson.struct(Field("resourceList", Slice(RC)))


def decode(text: str | bytes, kind: gojson.GoType = LIST) -> tuple[Any, gojson.Report]:
    return gojson.decode(kind, gojson.parse(text).value)


def first(text: str) -> dict[str, Any]:
    value, report = decode(text)
    assert report.problems == []
    return value["resourceList"][0]


@pytest.mark.parametrize(("text", "expected"), [
    ('{"resourceList":[{"resourceName":"a","ResourceName":"b","resourcename":"c"}]}', "c"),
    ('{"resourceList":[{"ResourceName":"b","resourceName":"a"}]}', "a"),
    ('{"resourceList":[{"RESOURCENAME":"x"}]}', "x"),
    ('{"ResourceList":[{"resourceNAME":"x"}]}', "x"),
    ('{"resourceList":[{"re\u017fourceName":"long-s"}]}', "long-s"),  # Go folds U+017F to S
    ('{"resourceList":[{"resourceName":"\\ud800x"}]}', "\ufffdx"),  # a lone surrogate: U+FFFD
])
def test_keys_fold_as_go_folds_them_and_the_last_duplicate_wins(text: str, expected: str) -> None:
    assert first(text)["resourceName"] == expected


def test_go_folding_maps_exactly_two_non_ascii_runes_onto_ascii() -> None:
    # encoding/json's foldRune: the smallest rune of the fold set; checked against Go 1.26
    assert gojson.fold("\u017f\u212a") == "SK"
    assert gojson.fold("\u0131") == "\u0131" and gojson.fold("\u0130") == "\u0130"  # no dotless/dotted I
    assert gojson.fold("\ufb00") == "\ufb00"  # Python's upper() would make it "FF"
    kind = gojson.struct(Field("linkTypes", String()), Field("isRdma", Bool()), Field("ff", Bool()))
    value, report = gojson.decode(kind, gojson.parse(
        '{"lin\u212aTypes": "k", "\u0131sRdma": true, "\ufb00": true}').value)
    assert value == {"linkTypes": "k"} and [n.path for n in report.notices] == ['["\\u0131sRdma"]', '["\\ufb00"]']


def test_a_struct_or_slice_given_twice_is_merged_as_go_merges() -> None:
    # the second resourceList decodes into the first's elements: deviceType survives
    value, _ = decode('{"resourceList":[{"resourceName":"a","deviceType":"accelerator"}],'
                      '"resourceList":[{"resourceName":"b"}]}')
    assert value["resourceList"] == [{"resourceName": "b", "deviceType": "accelerator"}]
    assert first('{"resourceList":[{"s":{"vendors":["a","b"],"isRdma":true},"s":{"vendors":["c"]}}]}')["s"] == {
        "vendors": ["c"], "isRdma": True}
    assert first('{"resourceList":[{"m":{"x":{"a":"1"}},"m":{"y":{"b":"2"}}}]}')["m"] == {
        "x": {"a": "1"}, "y": {"b": "2"}}
    assert first('{"resourceList":[{"m":{"x":{"a":"1"},"x":{"b":"2"}}}]}')["m"] == {"x": {"b": "2"}}
    assert gojson.plain(first('{"resourceList":[{"r":{"a":1},"r":[2]}]}')["r"]) == [2]


def test_null_clears_a_pointer_and_leaves_a_value_as_it_was() -> None:
    assert "vlan" not in first('{"resourceList":[{"vlan":5,"vlan":null}]}')
    assert first('{"resourceList":[{"i":5,"i":null}]}')["i"] == 5
    value, report = decode('{"resourceList":null}')
    assert value == {} and report.problems == []
    value, report = decode("null")
    assert value == {} and report.problems == []  # Go: the struct stays as it was


@pytest.mark.parametrize(("number", "field", "ok"), [
    ("-0", "i", True), ("-0", "u", False), ("1.0", "i", False), ("1e2", "i", False), ("65535", "u", True),
    ("65536", "u", False), ("-1", "u", False), ("9223372036854775807", "i", True),
    ("9223372036854775808", "i", False), ("1" + "0" * 5000, "i", False), ("true", "i", False),
    ('"1"', "i", False),
])
def test_numbers_must_fit_the_go_type(number: str, field: str, ok: bool) -> None:
    value, report = decode(f'{{"resourceList":[{{"{field}":{number}}}]}}')
    assert (report.problems == []) is ok, report.problems
    if not ok:
        [problem] = report.problems
        assert problem.path == f"resourceList[0].{field}"


@pytest.mark.parametrize("text", ['{"resourceList":[{"i":NaN}]}', '{"a": Infinity}', '[-Infinity]', "{", "",
                                  '{"a":1} x', "\ufeff{}", '{"a":"\x01"}'])
def test_what_go_cannot_parse_is_a_syntax_error(text: str) -> None:
    with pytest.raises(gojson.JsonSyntaxError):
        gojson.parse(text)


@pytest.mark.parametrize("depth", [257, 1000, 100_000])
def test_deep_nesting_is_one_clear_error_never_a_recursion_error(depth: int) -> None:
    for text in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth, "[" * depth):
        with pytest.raises(gojson.JsonSyntaxError, match="nested"):
            gojson.parse(text)
    assert gojson.parse("[" * 256 + "]" * 256).value is not None
    assert gojson.nesting_depth('"[[[[" [1]') == 1  # brackets in strings do not count


def test_invalid_utf8_is_read_as_one_replacement_per_byte_as_go_does() -> None:
    parsed = gojson.parse(b'{"resourceList":[{"resourceName":"\xff\xe2\x82x"}]}')
    assert parsed.replaced_bytes == 3
    value, _ = gojson.decode(LIST, parsed.value)
    assert value["resourceList"][0]["resourceName"] == "\ufffd\ufffd\ufffdx"
    with pytest.raises(gojson.JsonSyntaxError):
        gojson.parse(b"\xff{}")  # outside a string it is a syntax error, in Go too


@pytest.mark.parametrize(("text", "path"), [
    ('{"resourceList":{}}', "resourceList"),
    ('{"resourceList":[5]}', "resourceList[0]"),
    ('{"resourceList":[{"s":"x"}]}', "resourceList[0].s"),
    ('{"resourceList":[{"s":{"isRdma":1}}]}', "resourceList[0].s.isRdma"),
    ('{"resourceList":[{"s":{"vendors":"8086"}}]}', "resourceList[0].s.vendors"),
    ('{"resourceList":[{"s":{"vendors":[null, 1]}}]}', "resourceList[0].s.vendors[1]"),
    ('{"resourceList":[{"l":{}}]}', "resourceList[0].l"),
    ('{"resourceList":[{"m":{"x":{"a":false}}}]}', "resourceList[0].m.x.a"),
    ('{"resourceList":[{"resourceName":["a"]}]}', "resourceList[0].resourceName"),
    ("[]", ""),
])
def test_a_wrong_type_at_any_level_is_a_problem_naming_its_path(text: str, path: str) -> None:
    _, report = decode(text)
    assert [p.path for p in report.problems] == [path]


def test_every_wrong_type_is_reported_and_the_rest_still_decodes() -> None:
    value, report = decode('{"resourceList":[{"i":1,"i":"x","resourceName":"late","u":-1}]}')
    assert [p.path for p in report.problems] == ["resourceList[0].i", "resourceList[0].u"]
    assert value["resourceList"][0] == {"i": 1, "resourceName": "late"}


def test_unknown_keys_are_notices_with_path_and_value() -> None:
    value, report = decode('{"resourceList":[{"resourceName":"a","colour":{"r":1e400}}],"extra":[1]}')
    assert value == {"resourceList": [{"resourceName": "a"}]} and report.problems == []
    assert [(n.path, n.value) for n in report.notices] == [("resourceList[0].colour", {"r": "1e400"}),
                                                          ("extra", [1])]
    assert report.notices[0].line("f.json") == 'f.json: resourceList[0].colour: unknown field (value: {"r": "1e400"})'


def test_odd_keys_stay_on_one_line() -> None:
    _, report = decode('{"a\\nb": 1, "x y": 2}')
    assert [n.path for n in report.notices] == ['["a\\nb"]', '["x y"]']
    assert all("\n" not in n.line("f") for n in report.notices)


def test_kept_unknown_fields_and_quiet_structs() -> None:
    kind = gojson.struct(Field("type", String()), unknown="", keep_unknown=True)
    value, report = gojson.decode(kind, gojson.parse('{"Type": "host-local", "subnet": "10.0.0.0/24"}').value)
    assert value == {"type": "host-local", "subnet": "10.0.0.0/24"} and report.notices == []


def test_schema_of_a_pydantic_model_folds_keys_and_types_fields() -> None:
    from sriovkit.provision.policy import Policy

    schema = gojson.schema_of(Policy)
    assert isinstance(schema, Struct)
    value, report = gojson.decode(schema, gojson.parse(
        '{"POLICIES": [{"Name": "a", "NumVfs": 2, "nicselector": {"PfNames": ["eth0"]}, "mtu": null}]}').value)
    assert report.problems == [] and value == {"policies": [{"name": "a", "numVfs": 2,
                                                             "nicSelector": {"pfNames": ["eth0"]}}]}
    _, report = gojson.decode(schema, gojson.parse('{"policies": [{"numVfs": 2.5}]}').value)
    assert [p.path for p in report.problems] == ["policies[0].numVfs"]


def test_yaml_aliases_cannot_expand_without_end() -> None:
    shared: list[Any] = ["x"] * 10
    for _ in range(8):
        shared = [shared] * 10
    with pytest.raises(gojson.TooLarge):
        gojson.as_tree({"a": shared})


@pytest.mark.parametrize("text", ["1e400", "-1e400", "[1, {\"x\": 123" + "0" * 400 + "}]"])
def test_a_number_no_float64_holds_is_its_own_json_error(text):
    with pytest.raises(gojson.NumberRangeError, match="does not fit a float64") as caught:
        gojson.plain(gojson.parse(text).value)
    assert isinstance(caught.value, gojson.JsonError) and isinstance(caught.value, ValueError)


def test_syntax_errors_are_json_errors_too():
    with pytest.raises(gojson.JsonError):
        gojson.parse('{"a": NaN}')


@pytest.mark.parametrize(("obj", "expected"), [
    ({"containerID": "a"}, "a"),
    ({"CONTAINERID": "a"}, "a"),
    ({"ContainerID": "a", "containerID": "b"}, "b"),  # every matching key sets the field: the last wins
    ({"containerID": "b", "ContainerID": "a"}, "a"),
    ({"container\u212aD": "x"}, "missing"),  # K-sign folds to K, not to the 'i' the name has
    ({"container\u0131D": "x"}, "missing"),  # dotless i: Go does not fold it onto I
    ({}, "missing"),
])
def test_lookup_matches_a_field_as_encoding_json_does(obj: dict[str, str], expected: str) -> None:
    assert gojson.lookup(obj, "containerID", "missing") == expected


def test_lookup_folds_the_non_ascii_runes_go_folds() -> None:
    assert gojson.lookup({"\u212aey": 1, "\u017fize": 2}, "key") == 1
    assert gojson.lookup({"\u017fize": 2}, "size") == 2
