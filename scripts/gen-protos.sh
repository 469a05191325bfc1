#!/bin/sh
# Regenerate the gRPC Python modules (kubelet device-plugin, pod-resources and
# plugin-registration APIs; the CRI runtime.v1 subset) with the pinned grpcio-tools from the project venv.
set -eu
cd "$(dirname "$0")/.."
exec .venv/bin/python -m sriovkit.deviceplugin.api.generate "$@"
