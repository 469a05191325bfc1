"""Regenerate the Python modules for the kubelet's gRPC APIs (device plugin, podresources, plugin
registration, DRA plugin v1/v1beta1 and DRA health v1alpha1/v1beta1; and the CRI subset) from the .proto files.

Run from a checkout with the pinned grpcio-tools installed:

    python -m sriovkit.deviceplugin.api.generate

The generated ``*_pb2.py`` / ``*_pb2_grpc.py`` are committed, so running the
agent needs only grpcio and protobuf; so are their type stubs (``*_pb2.pyi`` and
``*_pb2_grpc.pyi`` from mypy-protobuf's protoc plugins, pinned in requirements.lock; they are
clean under mypy --strict, which protoc's own ``--pyi_out`` stubs are not), which mypy reads
instead of the untyped generated code. Protos are compiled with ``src`` as the
include root: the generated modules then import each other absolutely
(``from sriovkit.kubeapi import ...``) and register unique file names
(``sriovkit/kubeapi/podresources.proto``) in protobuf's descriptor pool.
"""

from __future__ import annotations

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[3]
PROTOS = (
    "sriovkit/deviceplugin/api/deviceplugin.proto",
    "sriovkit/kubeapi/podresources.proto",
    "sriovkit/kubeapi/pluginregistration.proto",
    "sriovkit/kubeapi/cri.proto",
    "sriovkit/kubeapi/dra_v1.proto",
    "sriovkit/kubeapi/dra_v1beta1.proto",
    "sriovkit/kubeapi/drahealth_v1alpha1.proto",
    "sriovkit/kubeapi/drahealth_v1beta1.proto",
)


def generate(out: Path = SRC) -> int:
    """Every module and stub from the protos under `SRC`, written under `out` (the same relative
    paths: `out` = SRC regenerates the committed files; a test compares another `out` with them)."""
    from grpc_tools import protoc  # dev-time only

    include = str(Path(protoc.__file__).parent / "_proto")
    # mypy-protobuf's plugins are installed beside this interpreter (the venv's bin/)
    plugins = Path(sys.executable).parent
    for proto in PROTOS:
        args = ["grpc_tools.protoc", f"-I{SRC}", f"-I{include}",
                f"--python_out={out}", f"--grpc_python_out={out}",
                f"--plugin=protoc-gen-mypy={plugins / 'protoc-gen-mypy'}", f"--mypy_out={out}",
                f"--plugin=protoc-gen-mypy_grpc={plugins / 'protoc-gen-mypy_grpc'}", f"--mypy_grpc_out={out}",
                str(SRC / proto)]
        if protoc.main(args) != 0:
            print(f"protoc failed for {proto}", file=sys.stderr)
            return 1
        print(f"generated {proto}")
    return 0


def main() -> int:
    return generate(SRC)


if __name__ == "__main__":
    sys.exit(main())
