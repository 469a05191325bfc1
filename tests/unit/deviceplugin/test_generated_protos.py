"""The committed gRPC modules and their type stubs are exactly what the protos generate with the
pinned grpcio-tools and mypy-protobuf: a proto edited without regenerating, or a generator bumped
without committing its output, fails here (mypy reads the stubs, the agent imports the modules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sriovkit.deviceplugin.api import generate

GENERATED = ("*_pb2.py", "*_pb2_grpc.py", "*_pb2.pyi", "*_pb2_grpc.pyi")


def generated_files(root: Path) -> dict[str, str]:
    """Relative path -> text of every generated module and stub under `root`."""
    return {str(p.relative_to(root)): p.read_text() for pattern in GENERATED for p in root.rglob(pattern)}


def test_committed_modules_and_stubs_are_what_the_protos_generate(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    assert generate.generate(tmp_path) == 0
    fresh = generated_files(tmp_path)
    # every proto gives a message module, a service module and a stub for each
    assert len(fresh) == 4 * len(generate.PROTOS)
    committed = generated_files(generate.SRC / "sriovkit")
    committed = {f"sriovkit/{name}": text for name, text in committed.items()}
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"regenerate with scripts/gen-protos.sh: {stale}"
