#!/usr/bin/env bash
# CI / developer entry for the end-to-end suite on real VFs:  tests/e2e/run.sh [pytest args]
# Sets up the VM lab (QEMU from bookworm-backports + guest kernel; as root, idempotent) and runs the
# vmlab tests. Fails loudly (non-zero) when the lab cannot be set up; never skips.
# `./dev test` (the CI's .ci/run) also collects these tests, with the same setup done by the fixture.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
PY=${SRIOVKIT_VENV:-.venv}/bin/python
[ -x "$PY" ] || ./dev setup
t0=$(date +%s)
bash tests/e2e/vmlab/setup.sh
echo "[e2e] lab ready in $(( $(date +%s) - t0 ))s" >&2
"$PY" -m pytest -q -m vmlab tests/e2e "$@"
echo "[e2e] total $(( $(date +%s) - t0 ))s" >&2
