"""Guest side of bench/vm_cni.py's profile: `sriovctl agent ARGS...` with each CNI call it serves timed,
and those of a container whose id starts with "ctr-profiled-" run under cProfile.

    PROFILE_OUT=DIR python profile_agent.py ARGS...     (ARGS as for `sriovctl agent`)

The agent's CNI calls run on its worker threads, which a `python -m cProfile` of the process would
not see (it profiles the main thread only): the profiler is enabled around `CniService.__call__`,
the whole of the agent's work for one call (decode to answer; the socket hop is the shim's wall
time minus this). At exit: DIR/agent.prof (the ADDs) and DIR/agent-del.prof (the DELs), pstats
files, and DIR/agent-calls.tsv, one line per call: COMMAND CONTAINER SECONDS PROFILED(0/1).
Bench-only: the product has no profiling switch.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from sriovkit.agent.cni_service import CniService
from sriovkit.cli import main

OUT = Path(os.environ["PROFILE_OUT"])
PREFIX = "ctr-profiled-"
_lock = threading.Lock()
_profiles: dict[str, list[cProfile.Profile]] = {"ADD": [], "DEL": []}
_calls: list[str] = []
_served = CniService.__call__


def _timed(self: CniService, env: Mapping[str, str], stdin: bytes) -> tuple[bytes, int]:
    command, container = env.get("CNI_COMMAND", ""), env.get("CNI_CONTAINERID", "")
    profile = cProfile.Profile() if container.startswith(PREFIX) and command in _profiles else None
    start = time.perf_counter()
    if profile is not None:
        profile.enable()  # this thread only: the call runs on it from decode to answer
    try:
        return _served(self, env, stdin)
    finally:
        if profile is not None:
            profile.disable()
        seconds = time.perf_counter() - start
        with _lock:
            _calls.append(f"{command}\t{container}\t{seconds:.6f}\t{int(profile is not None)}\n")
            if profile is not None:
                _profiles[command].append(profile)


def _dump() -> None:
    (OUT / "agent-calls.tsv").write_text("".join(_calls))
    for command, name in (("ADD", "agent.prof"), ("DEL", "agent-del.prof")):
        profiles = _profiles[command]
        if profiles:
            stats = pstats.Stats(profiles[0])
            for more in profiles[1:]:
                stats.add(more)
            stats.dump_stats(str(OUT / name))


CniService.__call__ = _timed  # type: ignore[method-assign]
try:
    code = main(["agent", *sys.argv[1:]])
finally:
    _dump()
sys.exit(code)
