"""cProfile of the agent's CNI calls inside a bench: each call profiled on the worker thread
that serves it (cProfile sees only the thread it is enabled on), all calls merged at the end.

    handler = ProfiledHandler(CniService(...)); ...; handler.dump(path)   # then: python -m pstats path
"""

from __future__ import annotations

import cProfile
import pstats
import threading
from collections.abc import Callable, Mapping

Handler = Callable[[Mapping[str, str], bytes], tuple[bytes, int]]


class ProfiledHandler:
    """`handler`, with every call run under a per-thread profiler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._local = threading.local()
        self._profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def __call__(self, env: Mapping[str, str], stdin: bytes) -> tuple[bytes, int]:
        profile = getattr(self._local, "profile", None)
        if profile is None:
            profile = self._local.profile = cProfile.Profile()
            with self._lock:
                self._profiles.append(profile)
        profile.enable()
        try:
            return self.handler(env, stdin)
        finally:
            profile.disable()

    def dump(self, path: str, top: int = 25) -> None:
        """Write the merged stats to `path` and print the `top` functions by own time."""
        with self._lock:
            profiles = list(self._profiles)
        if not profiles:
            return
        stats = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            stats.add(profile)
        stats.dump_stats(path)
        print(f"(agent profile: {path}; {len(profiles)} worker thread(s))")
        stats.sort_stats("tottime").print_stats(top)
