"""What the benches share about the processes they start, and about the machine they run on."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


def stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`; reaped either way."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True, slots=True)
class MachineCpu:
    """The machine's CPU time so far, all CPUs, in seconds (/proc/stat's first line): busy, idle and
    stolen (time the hypervisor ran something else while this VM wanted a CPU). A difference of two
    says what the machine did meanwhile: a bench run with much stolen time was slowed from outside,
    which its own figures cannot show."""

    busy: float = 0.0
    idle: float = 0.0
    steal: float = 0.0

    def shares(self) -> str:
        """How much of the time was idle and how much the hypervisor took, in words."""
        total = self.busy + self.idle + self.steal
        if total <= 0:
            return "not measured"
        return f"{self.idle / total:.0%} idle, {self.steal:.2f} s stolen by the hypervisor ({self.steal / total:.0%})"

    def __add__(self, other: MachineCpu) -> MachineCpu:
        return MachineCpu(self.busy + other.busy, self.idle + other.idle, self.steal + other.steal)

    def __sub__(self, earlier: MachineCpu) -> MachineCpu:
        return MachineCpu(self.busy - earlier.busy, self.idle - earlier.idle, self.steal - earlier.steal)


def machine_cpu(stat: Path = Path("/proc/stat")) -> MachineCpu:
    """Now's MachineCpu; zeros where /proc/stat cannot be read (no figure rather than a failed bench)."""
    try:
        first = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return MachineCpu()
    # cpu user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user);
    # an older kernel's line stops earlier: the fields it lacks count as 0
    ticks = ([int(f) for f in first[1:9]] + [0] * 8)[:8]
    user, nice, system, idle, iowait, irq, softirq, steal = ticks
    hz = os.sysconf("SC_CLK_TCK")
    return MachineCpu((user + nice + system + irq + softirq) / hz, (idle + iowait) / hz, steal / hz)
