"""The Go-template subset of helm_render behaves as Go's text/template and Helm do for the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_env import CHART
from helm_render import TemplateError, deep_merge, main, render_chart, render_string, set_value

CTX: dict[str, Any] = {
    "Values": {"name": "sriov", "n": 3, "zero": 0, "empty": [], "list": ["a", "b"], "map": {"b": 2, "a": 1},
               "nested": {"x": {"y": "deep"}}, "on": True, "off": False},
    "Release": {"Name": "rel", "Namespace": "kube-system"},
    "Chart": {"Name": "sriovkit", "AppVersion": "0.1.0"},
}


@pytest.mark.parametrize(("template", "expected"), [
    ("a {{ .Values.name }} b", "a sriov b"),
    ("a\n  {{- .Values.name -}}\n  b", "asriovb"),                # {{- -}} eat all surrounding whitespace
    ("{{ .Values.missing }}|", "|"),                                 # a missing key prints nothing
    ("{{ if .Values.zero }}y{{ else if .Values.empty }}e{{ else }}n{{ end }}", "n"),  # 0 and [] are false
    ("{{ if .Values.off }}1{{ else if .Values.on }}2{{ else }}3{{ end }}", "2"),
    ("{{ range .Values.list }}[{{ . }}]{{ end }}", "[a][b]"),
    ("{{ range $k, $v := .Values.map }}{{ $k }}={{ $v }},{{ end }}", "a=1,b=2,"),  # maps in key order
    ("{{ range .Values.empty }}x{{ else }}none{{ end }}", "none"),
    ("{{ range .Values.list }}{{ $.Release.Name }}{{ end }}", "relrel"),
    ("{{ with .Values.nested.x }}{{ .y }}{{ end }}", "deep"),
    ("{{ $p := .Values.nested }}{{ $p.x.y }}", "deep"),
    ("{{ .Values.name | quote }} {{ quote .Values.n }}", '"sriov" "3"'),
    ("{{ .Values.missing | default .Chart.AppVersion }}", "0.1.0"),
    ("{{ not .Values.on }} {{ eq .Values.n 3 }} {{ ne .Values.n 3 }}", "false true false"),
    ("{{ and .Values.on .Values.name }} {{ or .Values.zero .Values.name }}", "sriov sriov"),
    ("x:{{ toYaml .Values.map | nindent 2 }}", "x:\n  a: 1\n  b: 2"),
    ("{{ toJson .Values.map }}", '{"a":1,"b":2}'),
    ("{{ toJson (dict \"k\" .Values.list) }}", '{"k":["a","b"]}'),
    ("{{/* a comment */}}ok", "ok"),
])
def test_renders_like_go_templates(template: str, expected: str) -> None:
    assert render_string(template, CTX) == expected


@pytest.mark.parametrize(("template", "complaint"), [
    ("{{ .Values.nope.deeper }}", "t:1: nil pointer evaluating .Values.nope.deeper"),
    ("\n{{ include \"x\" . }}", "t:2: unsupported template construct"),
    ("{{ upper .Values.name }}", "unsupported function 'upper'"),
    ("{{ if .Values.on }}open", "missing {{ end }}"),
    ("{{ end }}", "unexpected {{ end }}"),
    ("{{ .Values.map }}", "needs toYaml or toJson"),
    ("{{ $nope }}", "undefined variable $nope"),
])
def test_refuses_what_it_cannot_render(template: str, complaint: str) -> None:
    with pytest.raises(TemplateError, match=None) as info:
        render_string(template, CTX, "t")
    assert complaint in str(info.value)


def test_values_merge_and_set() -> None:
    merged = deep_merge({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": 9}, "l": [2]})
    assert merged == {"a": {"b": 9, "c": 2}, "l": [2]}
    assert set_value({"a": {"b": 1}}, "a.c=true") == {"a": {"b": 1, "c": True}}
    assert set_value({}, "a=9.9") == {"a": "9.9"} and set_value({}, "a=12") == {"a": 12}
    with pytest.raises(TemplateError):
        set_value({}, "novalue")


def test_every_template_renders_to_yaml_objects() -> None:
    templates = {p.name for p in (CHART / "templates").glob("*.yaml")}
    rendered = {name.rsplit("/", 1)[1] for name, _ in render_chart(CHART, sets=(
        "networkAttachmentDefinitions.create=true", "hotplug.enabled=true", "dra.enabled=true",
        "injector.enabled=true"))}
    assert rendered == templates


def test_release_namespace_reaches_every_namespaced_object() -> None:
    for _, obj in render_chart(CHART, namespace="sriov-system"):
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == "sriov-system", obj["kind"]


def test_command_line_prints_the_objects(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    values = tmp_path / "v.yaml"
    values.write_text("config: {create: false}\n")
    assert main([str(CHART), "-f", str(values), "--set", "image.tag=9.9"]) == 0
    objects = [o for o in yaml.safe_load_all(capsys.readouterr().out) if o]
    assert "ConfigMap" not in {o["kind"] for o in objects}
    ds = next(o for o in objects if o["kind"] == "DaemonSet")
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == "sriovkit/sriovkit:9.9"


@pytest.mark.parametrize(("assignment", "complaint"), [
    ("agent.capabilites=NET_ADMIN", "values: agent: Additional properties are not allowed ('capabilites'"),
    ("agent.metricsPort=http", "values: agent.metricsPort: 'http' is not of type 'integer'"),
    ("hostPaths.cniBinDir=opt/cni/bin", "values: hostPaths.cniBinDir: 'opt/cni/bin' does not match"),
])
def test_values_are_checked_against_the_chart_schema(assignment: str, complaint: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_chart(CHART, sets=(assignment,))
    assert str(info.value).startswith(complaint)
