"""deploy/Dockerfile: Debian slim, builds from files the build context really has, runs the agent."""

from __future__ import annotations

import re

from deploy_env import DEPLOY, REPO

DOCKERFILE = (DEPLOY / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    return re.findall(rf"^{name}\s+(.+)$", DOCKERFILE, re.M)


def test_every_stage_is_debian_slim() -> None:
    bases = [line.split()[0] for line in _instructions("FROM")]
    assert bases and all(re.fullmatch(r"debian:[a-z]+-slim", b) for b in bases)


def test_copied_sources_exist_and_the_dockerignore_lets_them_in() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[0] == "**"  # everything out, then only what the build needs back in
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = [src for line in _instructions("COPY") if not line.startswith("--from")
               for src in line.split()[:-1]]
    assert sources
    for src in sources:
        assert (REPO / src).exists(), src
        assert src.rstrip("/") in allowed, f"{src} is excluded by Dockerfile.dockerignore"


def test_image_entrypoint_serves_upstreams_daemonsets_and_installs_the_native_shim() -> None:
    # upstream's DaemonSets give args only (device plugin) or nothing (CNI): the image's ENTRYPOINT
    # must be what tells the roles apart, with no CMD arguments of its own
    assert _instructions("ENTRYPOINT") == ['["sriovkit-entrypoint"]'] and _instructions("CMD") == ["[]"]
    assert any(line.startswith("--from=shim ") and line.endswith(" /opt/sriovkit/libexec/sriovkit/sriov")
               for line in _instructions("COPY"))
    assert "CGO_ENABLED=0" in DOCKERFILE
