"""The examples in docs/ are executed: configs produce the documented pools (or the documented
errors) on the documented simulated node; netconfs, NADs, policies and Helm values are accepted;
the configuration reference names every field the code knows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import deploy_validate
import helm_render
import pytest
import yaml
from doc_blocks import DOCS, REPO, Block, ConfigExample, config_examples, table_fields, tagged

from sriovkit.cli import main
from sriovkit.cni.netconf import parse_netconf
from sriovkit.provision.policy import NicSelector, NodePolicy, Policy, parse_policy
from sriovkit.resources import config as dp_config
from sriovkit.sim import host as sim

KUBERNETES_VERSION = "1.37.0"


def _ids(blocks: list[Any]) -> list[str]:
    return [(b.config if isinstance(b, ConfigExample) else b).where for b in blocks]


def _host(spec: Block, tmp_path: Path) -> Path:
    root = tmp_path / "host"
    sim.create(root, yaml.safe_load(spec.text))
    return root


def _sriovctl(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _last_host_before(block: Block) -> Block:
    hosts = [h for h in tagged("sim-host") if h.doc == block.doc and h.line < block.line]
    assert hosts, f"{block.where}: no ```yaml sim-host``` block before it"
    return hosts[-1]


def test_docs_have_executable_examples() -> None:
    assert len(config_examples()) >= 4
    assert {b.doc for b in tagged("config.json")} >= {"configuration.md", "upgrade.md"}


@pytest.mark.parametrize("example", config_examples(), ids=_ids(config_examples()))
def test_config_example_gives_the_documented_pools(example: ConfigExample, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert example.host is not None, f"{example.config.where}: no ```yaml sim-host``` block before it"
    host = _host(example.host, tmp_path)
    (tmp_path / "config.json").write_text(example.config.text)
    monkeypatch.chdir(tmp_path)  # so messages name the file as the doc does: config.json
    expect = example.expectation
    if "pools" in expect.tags:
        code, out, err = _sriovctl(["pools", "--host-root", str(host), "--config-file", "config.json",
                                    "-o", "json"], capsys)
        assert (code, err) == (0, ""), f"{example.config.where}: {err}"
        assert json.loads(out) == json.loads(expect.text), f"{example.config.where}: pools differ from {expect.where}"
        if example.explain is not None and "explain" in example.explain.tags:
            code, out, err = _sriovctl(["pools", "--host-root", str(host), "--config-file", "config.json",
                                        "--explain"], capsys)
            assert (code, out.rstrip("\n")) == (0, example.explain.text.rstrip("\n")), example.explain.where
    elif "errors" in expect.tags:
        strict = ["--strict"] if "strict" in expect.tags else []
        code, out, err = _sriovctl(["pools", "--host-root", str(host), "--config-file", "config.json", *strict],
                                   capsys)
        assert code == 2
        assert [line.removeprefix("sriovctl: ") for line in err.splitlines()] == expect.text.splitlines()
    elif "warnings" in expect.tags:
        code, out, err = _sriovctl(["pools", "--host-root", str(host), "--config-file", "config.json",
                                    "-o", "json"], capsys)
        assert code == 0, f"{example.config.where}: {err}"
        assert [line.removeprefix("sriovctl: warning: ") for line in err.splitlines()] == expect.text.splitlines()
        if example.explain is not None and "pools" in example.explain.tags:
            assert json.loads(out) == json.loads(example.explain.text), example.explain.where
    else:
        pytest.fail(f"{example.config.where}: the next block must be ```json pools```, ```text errors``` or "
                    "```text warnings```")


@pytest.mark.parametrize("block", tagged("netconf"), ids=_ids(tagged("netconf")))
def test_netconf_example_is_accepted(block: Block) -> None:
    data = json.loads(block.text)
    parse_netconf(data)  # raises CniError naming every problem
    assert deploy_validate.netconf_problems(block.text, block.where) == []


@pytest.mark.parametrize("block", tagged("nad"), ids=_ids(tagged("nad")))
def test_nad_example_validates(block: Block) -> None:
    nad = yaml.safe_load(block.text)
    assert deploy_validate.object_problems(nad, block.where, KUBERNETES_VERSION) == []
    parse_netconf(json.loads(nad["spec"]["config"]), need_device=False)


@pytest.mark.parametrize("block", tagged("policy"), ids=_ids(tagged("policy")))
def test_policy_example_is_accepted_on_the_documented_node(block: Block, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    parse_policy(block.text, block.where)
    host = _host(_last_host_before(block), tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(block.text)
    code, _, err = _sriovctl(["provision", "--policy", str(policy), "--host-root", str(host), "--dry-run"], capsys)
    assert (code, err) == (0, "")


@pytest.mark.parametrize("block", tagged("values"), ids=_ids(tagged("values")))
def test_helm_values_example_renders_valid_objects(block: Block, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(block.text)
    objects = helm_render.render_chart(REPO / "deploy" / "helm" / "sriovkit", values_files=(values,))
    problems = [p for name, o in objects for p in deploy_validate.object_problems(o, name, KUBERNETES_VERSION)]
    assert objects and problems == []


@pytest.mark.parametrize("block", tagged("k8s"), ids=_ids(tagged("k8s")))
def test_kubernetes_objects_in_docs_validate(block: Block) -> None:
    objects = [o for o in yaml.safe_load_all(block.text) if o]
    problems = [p for i, o in enumerate(objects)
                for p in deploy_validate.object_problems(o, f"{block.where}[{i}]", KUBERNETES_VERSION)]
    assert objects and problems == []


def test_dra_doc_has_validated_device_classes_and_claims() -> None:
    kinds = {o["kind"] for b in tagged("k8s") if b.doc == "dra.md" for o in yaml.safe_load_all(b.text) if o}
    assert {"DeviceClass", "ResourceClaimTemplate", "ResourceClaim", "Pod"} <= kinds


def _aliases(model: Any) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def test_configuration_reference_names_every_field() -> None:
    documented = table_fields("configuration.md")
    config_fields = set(dp_config._RESOURCE_FIELDS) | set().union(*dp_config.SELECTOR_FIELDS.values())
    netconf_fields = set(deploy_validate.SRIOV_NETCONF_SCHEMA["properties"]) - {"dns", "capabilities", "args"}
    policy_fields = _aliases(Policy) | _aliases(NodePolicy) | _aliases(NicSelector)
    missing = (config_fields | netconf_fields | policy_fields) - documented
    assert missing == set(), f"docs/configuration.md has no table row for {sorted(missing)}"


def test_docs_exist_and_link_to_each_other() -> None:
    names = {p.name for p in DOCS.glob("*.md")}
    assert {"install.md", "configuration.md", "troubleshooting.md", "upgrade.md"} <= names
    for doc in names:
        for target in re.findall(r"\]\(([a-z-]+\.md)\)", (DOCS / doc).read_text()):
            assert target in names, f"docs/{doc} links to missing {target}"


def _value_keys(values: dict[str, Any], prefix: str = "") -> set[str]:
    """`image.repository`-style keys; maps of free-form content (resources, probes...) count as one."""
    opaque = {"resources", "livenessProbe", "readinessProbe", "nodeSelector", "podAnnotations", "affinity"}
    keys: set[str] = set()
    for key, value in values.items():
        if isinstance(value, dict) and value and key not in opaque:
            keys |= _value_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_install_guide_documents_every_chart_value() -> None:
    values = yaml.safe_load((REPO / "deploy" / "helm" / "sriovkit" / "values.yaml").read_text())
    rows = {m for m in re.findall(r"^\| `([^`]+)` \|", (DOCS / "install.md").read_text(), re.M)}
    assert _value_keys(values) - rows == set()
