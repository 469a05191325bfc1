"""Shared by the deployment tests: where the manifests are, the chart rendered without Helm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_render
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MANIFESTS = DEPLOY / "manifests"
CHART = DEPLOY / "helm" / "sriovkit"
# The Kubernetes release whose API schemas the manifests must satisfy: the newest one the
# pinned kubernetes-validate ships. Raise it together with the pin in requirements.lock.
KUBERNETES_VERSION = "1.37.0"
# Values that switch on every optional part of the chart (tests render with and without them).
ALL_ON = Path(__file__).with_name("values-all-on.yaml")


def manifest_files() -> list[Path]:
    """Every plain manifest: deploy/manifests/ (hotplug/ too) and the example NADs in deploy/nad/."""
    return sorted(MANIFESTS.rglob("*.yaml")) + sorted((DEPLOY / "nad").glob("*.yaml"))


def load_objects(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def render(*sets: str, all_on: bool = False) -> list[dict[str, Any]]:
    """The chart's objects for its default values (or values-all-on.yaml) plus `--set` overrides."""
    files = (ALL_ON,) if all_on else ()
    return [obj for _, obj in helm_render.render_chart(CHART, values_files=files, sets=sets)]


def find(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [o for o in objects if o.get("kind") == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]
