"""`./dev kube up` on this machine: cached (binaries and image already built) and cold.

    python bench/kube_up.py            cached up + down timed now; cold build times as recorded
    python bench/kube_up.py --cold     also a truly cold build: every part rebuilt in a scratch
                                       cache (module and build caches empty), then up (slow: tens
                                       of minutes on 2 cores)

The cold figures without --cold are what scripts/kube/build.sh measured when it built each part
into /var/tmp/sriovkit-kube (.build-seconds in each part's directory): the real build on this
machine, from an empty module and build cache. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kube.cluster import CACHE, NODE_PARTS, Cluster


def recorded_build_seconds(cache: Path) -> dict[str, float]:
    out = {}
    for part in NODE_PARTS:
        found = sorted((cache / "bin").glob(f"{part}-*/.build-seconds"), key=lambda p: p.stat().st_mtime)
        if found:
            out[part] = float(found[-1].read_text())
    return out


def timed_up(state: Path) -> tuple[float, float]:
    cluster = Cluster(state)
    start = time.monotonic()
    try:
        cluster.up()
        up = time.monotonic() - start
    finally:
        start = time.monotonic()
        cluster.down()
    return up, time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="rebuild everything in a scratch cache first")
    args = parser.parse_args()
    if args.cold:
        scratch = Path(tempfile.mkdtemp(prefix="sriovkit-kube-cold-", dir="/var/tmp"))
        os.environ["SRIOVKIT_KUBE_CACHE"] = str(scratch)
        try:
            up, down = timed_up(scratch / "bench")
            print(f"kube up, cold (build from an empty cache + up): {up:7.1f} s   down {down:5.1f} s")
            for part, seconds in recorded_build_seconds(scratch).items():
                print(f"  build {part:12s} {seconds:7.0f} s")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    up, down = timed_up(CACHE / f"bench-{os.getpid()}")
    print(f"kube up, cached (binaries and image built):      {up:7.1f} s   down {down:5.1f} s")
    recorded = recorded_build_seconds(CACHE)
    for part, seconds in recorded.items():
        print(f"  cold build of {part:12s} (recorded by build.sh) {seconds:7.0f} s")
    if recorded:
        print(f"  cold build, all parts:                   {sum(recorded.values()):7.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
