"""Host side of the VM lab: set it up, boot it once for a list of guest scripts, read what they wrote.

The guest scripts (tests/e2e/guest/*.sh) only act on the kernel and record what it reports;
the tests assert on the host, in Python, against those records. One boot serves every
scenario of a pytest session: booting costs seconds under TCG, Python in the guest ~9x more.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

E2E_DIR = Path(__file__).resolve().parent
VMLAB_DIR = E2E_DIR / "vmlab"
GUEST_DIR = E2E_DIR / "guest"
SETUP_TIMEOUT_S = 900
BOOT_TIMEOUT_S = 1500  # one boot runs every guest script (5-10 min under TCG with all of them)
# one guest script: past this it is taken as hung (cni, the longest, takes about 110 s under TCG here)
SCRIPT_BUDGET_S = 420
HUNG_RETRIES = 1  # fresh boots for the scripts that hung or never ran after one did


class LabUnavailable(RuntimeError):
    """The lab could not be set up (QEMU or the guest kernel could not be installed)."""


def ensure_lab(log_path: Path) -> float:
    """Run the idempotent setup (installs QEMU and the guest kernel when missing); seconds taken."""
    start = time.monotonic()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(["bash", str(VMLAB_DIR / "setup.sh")], stdout=log, stderr=subprocess.STDOUT,
                                  timeout=SETUP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise LabUnavailable(f"vmlab setup timed out after {SETUP_TIMEOUT_S}s; log: {log_path}") from None
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-30:])
        raise LabUnavailable(f"vmlab setup failed (exit {proc.returncode}); last lines of {log_path}:\n{tail}")
    return time.monotonic() - start


def sriovctl_path() -> str:
    """The sriovctl of the interpreter running the tests (the guest sees the host's / as it is)."""
    return str(Path(sys.executable).parent / "sriovctl")


@dataclass(frozen=True)
class Attempt:
    """One VM boot and the guest scripts it was asked to run."""

    out_dir: Path
    scripts: tuple[str, ...]
    returncode: int
    output: str  # the guest's stdout/stderr and run-vm.sh's own summary lines
    wall_s: float

    def ran(self, script: str) -> bool:
        return (self.out_dir / script / "rc").exists()

    def hung(self, script: str) -> bool:
        """guest/run.sh gave up on it: still running after its budget."""
        return (self.out_dir / script / "hung").exists()

    def unfinished(self) -> list[str]:
        """The scripts that hung or never ran (the boot ended before them)."""
        return [s for s in self.scripts if self.hung(s) or not self.ran(s)]

    def summary(self) -> str:
        """One line per script: its exit, hung, or never ran; then run-vm.sh's own lines."""
        lines = []
        for script in self.scripts:
            if self.hung(script):
                lines.append(f"  {script}: hung (see {self.out_dir / script / 'hung.txt'})")
            elif self.ran(script):
                lines.append(f"  {script}: exit {(self.out_dir / script / 'rc').read_text().strip()}")
            else:
                lines.append(f"  {script}: never ran")
        lines += [f"  {line}" for line in self.output.splitlines() if line.startswith("# vmlab")]
        return "\n".join(lines)


@dataclass(frozen=True)
class Boot:
    """The VM boots that ran some guest scripts: one, plus one more per retry of scripts that hung
    or never ran because an earlier one hung (an emulated NIC can wedge the guest kernel)."""

    nics: int
    attempts: tuple[Attempt, ...]

    @property
    def returncode(self) -> int:
        return self.attempts[-1].returncode

    @property
    def wall_s(self) -> float:
        return sum(attempt.wall_s for attempt in self.attempts)

    def result(self, script: str) -> ScriptResult:
        return ScriptResult(self, script)

    def attempt_of(self, script: str) -> Attempt:
        """The last boot that ran `script` (the first boot if none did)."""
        ran = [attempt for attempt in self.attempts if script in attempt.scripts and attempt.ran(script)]
        return ran[-1] if ran else self.attempts[0]

    def guest_seconds(self) -> dict[str, float]:
        """Seconds each guest script took in the guest (guest/run.sh's `exit=N guest_seconds=S` lines),
        from the boot whose records the tests read."""
        seconds: dict[str, float] = {}
        for attempt in self.attempts:
            found = re.findall(r"^\[([\w.-]+)\] exit=\d+ guest_seconds=([\d.]+)( hung)?$", attempt.output, flags=re.M)
            seconds |= {script: float(value) for script, value, _hung in found}
        return seconds

    def history(self) -> str:
        """What each boot did, for a failing test and the session's summary."""
        return "\n".join(f"boot {n} ({attempt.wall_s:.0f}s, records in {attempt.out_dir}):\n{attempt.summary()}"
                         for n, attempt in enumerate(self.attempts, 1))


def boot(out_dir: Path, scripts: list[str], *, nics: int, guest_env: dict[str, str] | None = None,
         retries: int = HUNG_RETRIES, script_budget_s: int = SCRIPT_BUDGET_S) -> Boot:
    """Boot and run `scripts`; `guest_env`: variables for the guest scripts (e.g. a bench's knobs).
    A script still running after `script_budget_s` ends its boot (guest/run.sh records where it
    waited); up to `retries` fresh boots then run the scripts that hung or never ran."""
    attempts = [_boot_once(out_dir, scripts, nics, guest_env, script_budget_s)]
    while attempts[-1].unfinished() and len(attempts) <= retries:
        attempts.append(_boot_once(out_dir / f"retry{len(attempts)}", attempts[-1].unfinished(), nics,
                                   guest_env, script_budget_s))
    return Boot(nics, tuple(attempts))


def _boot_once(out_dir: Path, scripts: list[str], nics: int, guest_env: dict[str, str] | None,
               script_budget_s: int) -> Attempt:
    out_dir.mkdir(parents=True, exist_ok=True)
    variables = dict(guest_env or {}, VMLAB_SCRIPT_BUDGET=str(script_budget_s))
    assigns = [f"{name}={shlex.quote(value)}" for name, value in variables.items()]
    cmd = " ".join([*assigns, str(GUEST_DIR / "run.sh"), str(out_dir), sriovctl_path(), *scripts])
    env = dict(os.environ, VMLAB_NICS=str(nics), VMLAB_TIMEOUT=str(BOOT_TIMEOUT_S))
    start = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(VMLAB_DIR / "run-vm.sh"), "-w", str(out_dir), cmd], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
                              timeout=BOOT_TIMEOUT_S + 30, cwd=E2E_DIR)
        returncode, output = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as exc:  # run-vm.sh's own timeout did not end it
        partial = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output or ""
        returncode, output = -9, partial + f"\n# vmlab: run-vm.sh still running after {BOOT_TIMEOUT_S + 30}s, killed\n"
    wall = time.monotonic() - start
    (out_dir / "boot.log").write_text(output)
    return Attempt(out_dir, tuple(scripts), returncode, output, wall)


@dataclass(frozen=True)
class Command:
    """An sriovctl run recorded in the guest."""

    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.returncode == 0, f"command failed (rc={self.returncode}): {self.stderr}"
        return json.loads(self.stdout)


@dataclass
class Step:
    """The kernel's view at one point of a guest script, plus the commands run there."""

    path: Path

    @cached_property
    def sysfs(self) -> dict[str, dict[str, Any]]:
        return json.loads((self.path / "sysfs.json").read_text())  # type: ignore[no-any-return]

    @cached_property
    def links(self) -> dict[str, dict[str, Any]]:
        """`ip -d -j link show`, by interface name."""
        return {link["ifname"]: link for link in json.loads((self.path / "ip-link.json").read_text())}

    @cached_property
    def vfio_nodes(self) -> set[str]:
        return set((self.path / "dev-vfio.txt").read_text().split())

    def lines(self, name: str) -> list[str]:
        """A text file the guest wrote in this step (e.g. a file listing), one entry per line."""
        path = self.path / name
        assert path.exists(), f"the guest never wrote {name!r} in step {self.path.name}"
        return path.read_text().split()

    def netns(self, name: str) -> Netns:
        """What network namespace `name` showed at this step (`snapshot_netns` in guest/lib.sh)."""
        return Netns(self.path / "netns" / name)

    def command(self, name: str) -> Command:
        rc_file = self.path / f"{name}.rc"
        assert rc_file.exists(), f"the guest never ran {name!r} in step {self.path.name}"
        return Command(int(rc_file.read_text()), (self.path / f"{name}.json").read_text(),
                       (self.path / f"{name}.err").read_text())

    def pf(self, netdev: str) -> tuple[str, dict[str, Any]]:
        """A PF's address and sysfs record, found by its interface name."""
        for address, dev in self.sysfs.items():
            if netdev in dev["net"] and "sriov_totalvfs" in dev:
                return address, dev
        raise AssertionError(f"no SR-IOV PF with interface {netdev} in the guest's sysfs ({self.path})")

    def vf_addresses(self, pf_netdev: str) -> list[str]:
        """The PF's VFs by index, from its virtfnN links."""
        _, pf = self.pf(pf_netdev)
        return [pf["virtfn"][i] for i in sorted(pf["virtfn"], key=int)]

    def vfinfo(self, pf_netdev: str, index: int) -> dict[str, Any]:
        """The PF's view of VF `index` (an entry of `ip -d -j link show PF`'s vfinfo_list)."""
        (entry,) = [vf for vf in self.links[pf_netdev]["vfinfo_list"] if vf["vf"] == index]
        return entry  # type: ignore[no-any-return]

    def vf(self, pf_netdev: str, index: int) -> dict[str, Any]:
        """VF `index` as sysfs and the host namespace show it: address, driver (and override),
        netdevs, and its link's MAC, MTU and state."""
        address = self.vf_addresses(pf_netdev)[index]
        raw = self.sysfs[address]
        netdevs = raw["net"]
        link = self.links[netdevs[0]] if netdevs else None
        return {"address": address, "driver": raw["driver"], "override": raw["driver_override"],
                "netdevs": netdevs, "mac": link["address"] if link else None,
                "mtu": link["mtu"] if link else None, "up": "UP" in link["flags"] if link else None}


@dataclass
class Netns:
    """A network namespace's view at one step: its links, addresses and sysfs."""

    path: Path

    @property
    def existed(self) -> bool:
        return (self.path / "ip-link.json").exists()

    @cached_property
    def links(self) -> dict[str, dict[str, Any]]:
        """`ip -d -j link show` in the namespace, by interface name."""
        return {link["ifname"]: link for link in json.loads((self.path / "ip-link.json").read_text())}

    @cached_property
    def addresses(self) -> dict[str, list[str]]:
        """Each interface's addresses as CIDR strings (`ip -j addr show`)."""
        return {link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])]
                for link in json.loads((self.path / "addr.json").read_text())}

    @cached_property
    def routes(self) -> list[dict[str, Any]]:
        return json.loads((self.path / "route.json").read_text())  # type: ignore[no-any-return]

    @cached_property
    def sysfs(self) -> dict[str, dict[str, Any]]:
        """The namespace's own /sys/class/net: {ifname: {"device": PCI address or None, "address": MAC}}."""
        return json.loads((self.path / "sysfs.json").read_text())  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ScriptResult:
    boot: Boot
    script: str

    @property
    def dir(self) -> Path:
        return self.boot.attempt_of(self.script).out_dir / self.script

    @property
    def returncode(self) -> int | None:
        rc = self.dir / "rc"
        return int(rc.read_text()) if rc.exists() else None

    @property
    def log(self) -> str:
        path = self.dir / "guest.log"
        return path.read_text() if path.exists() else ""

    def step(self, name: str) -> Step:
        path = self.dir / name
        assert (path / "sysfs.json").exists(), f"guest script {self.script} never reached step {name!r}"
        return Step(path)

    def evidence(self) -> str:
        """What to show when a test on this script fails: its log (and where it hung), or, when it
        never ran, what each boot did and how the last one ended."""
        if self.returncode is None:
            last = self.boot.attempts[-1]
            return (f"guest script {self.script} never ran\n{self.boot.history()}\n"
                    f"last lines of boot {len(self.boot.attempts)} (all in {last.out_dir / 'boot.log'}):\n"
                    + "\n".join(last.output.splitlines()[-60:]))
        hung = self.dir / "hung.txt"
        where = f"\nit hung:\n{hung.read_text()}" if hung.exists() else ""
        return f"guest script {self.script} exit={self.returncode}, files in {self.dir}\n{self.log}{where}"
