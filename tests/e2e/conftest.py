"""End-to-end tests on real VFs (QEMU igb / igbvf / vfio-pci in a throw-away VM).

A test declares the guest script it needs and how many PFs: ``@pytest.mark.vmlab(guest="discovery",
nics=2)``. The session sets the lab up (installing QEMU and the guest kernel when missing), boots
the VM ONCE with every guest script the selected tests need, and hands each test the records its
script wrote (fixture ``guest``). A failing test prints its guest script's log.

The lab is never skipped silently: if it cannot be set up, every vmlab test fails with the setup
log. Outside CI, SRIOVKIT_E2E=skip skips them with that reason shown.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e_lab

_TIMINGS = pytest.StashKey[list[str]]()
_BOOT = pytest.StashKey[Any]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TIMINGS] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The first VM test's setup carries the session's boot (every guest script, and the boots that
    # retry scripts that hung): pytest's default per-test timeout is far shorter than that.
    here = os.path.dirname(__file__)
    boots_s = (1 + e2e_lab.HUNG_RETRIES) * (e2e_lab.BOOT_TIMEOUT_S + 30)
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(pytest.mark.timeout(e2e_lab.SETUP_TIMEOUT_S + boots_s + 120))


def _wanted(items: list[pytest.Item]) -> tuple[list[str], int]:
    scripts: list[str] = []
    nics = 1
    for item in items:
        marker = item.get_closest_marker("vmlab")
        if marker is None or "guest" not in marker.kwargs:
            continue
        if marker.kwargs["guest"] not in scripts:
            scripts.append(marker.kwargs["guest"])
        nics = max(nics, int(marker.kwargs.get("nics", 1)))
    return scripts, nics


@pytest.fixture(scope="session")
def lab_boot(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> e2e_lab.Boot:
    if os.environ.get("SRIOVKIT_E2E") == "skip":
        if os.environ.get("CI"):
            pytest.fail("SRIOVKIT_E2E=skip is not allowed in CI: the end-to-end suite must run")
        pytest.skip("SRIOVKIT_E2E=skip: VM lab tests not run")
    config = request.config
    base = tmp_path_factory.mktemp("vmlab")
    try:
        setup_s = e2e_lab.ensure_lab(base / "setup.log")
    except e2e_lab.LabUnavailable as exc:
        problem = str(exc)
    else:
        problem = None
    if problem is not None:
        pytest.fail(f"VM lab unavailable (not skipping: the e2e suite must run in CI): {problem}", pytrace=False)
    config.stash[_TIMINGS].append(f"vmlab setup: {setup_s:.1f}s")
    scripts, nics = _wanted(list(request.session.items))
    start = time.monotonic()
    boot = e2e_lab.boot(base / "run", scripts, nics=nics)
    config.stash[_TIMINGS].append(
        f"vmlab boot: {len(scripts)} guest scripts ({', '.join(scripts)}), nics={nics}: "
        f"{time.monotonic() - start:.1f}s wall, rc={boot.returncode}, records in {base / 'run'}")
    if len(boot.attempts) > 1:  # a script hung: say so even when its rerun passed
        config.stash[_TIMINGS].append(f"vmlab: {len(boot.attempts)} boots, scripts that hung or never ran "
                                      f"were run again\n{boot.history()}")
    per_script = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in boot.guest_seconds().items())
    config.stash[_TIMINGS].append(f"vmlab guest time per script: {per_script or 'none reported'}")
    config.stash[_BOOT] = boot
    return boot


@pytest.fixture
def guest(request: pytest.FixtureRequest, lab_boot: e2e_lab.Boot) -> e2e_lab.ScriptResult:
    """The records of the guest script this test's vmlab marker names."""
    marker = request.node.get_closest_marker("vmlab")
    assert marker is not None and "guest" in marker.kwargs, "mark the test @pytest.mark.vmlab(guest=...)"
    result = lab_boot.result(marker.kwargs["guest"])
    if result.returncode is None:
        pytest.fail(f"the VM boot did not run guest script {result.script}:\n{result.evidence()}", pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    marker = item.get_closest_marker("vmlab")
    boot = item.config.stash.get(_BOOT, None)
    if report.failed and marker is not None and boot is not None and "guest" in marker.kwargs:
        report.sections.append(("guest evidence", boot.result(marker.kwargs["guest"]).evidence()))
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    for line in config.stash.get(_TIMINGS, []):
        terminalreporter.write_line(line)
