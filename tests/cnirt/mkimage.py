#!/usr/bin/env python3
"""Build a sandbox ("pause") image archive from Debian's static busybox, with no registry.

usage: mkimage.py OUT.tar [IMAGE_NAME]

The archive is an OCI image layout (what `ctr images import` reads); the one
layer holds /bin/busybox and a few applet links, and the entrypoint sleeps.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "sleep", "ip", "cat", "ls", "true")


def _member(tf: tarfile.TarFile, name: str, data: bytes | None = None, *, mode: int = 0o755,
            kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.mode, info.type, info.linkname, info.uid, info.gid = 0, mode, kind, link, 0, 0
    if data is not None:
        info.size = len(data)
    tf.addfile(info, io.BytesIO(data) if data is not None else None)


def _layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "run"):
            _member(tf, d, kind=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755)
        with open(BUSYBOX, "rb") as f:
            _member(tf, "bin/busybox", f.read())
        for applet in APPLETS:
            _member(tf, f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox")
    return buf.getvalue()


def build(out: str, name: str) -> None:
    layer = _layer()
    layer_gz = gzip.compress(layer, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": ["/bin/sleep", "inf"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }, sort_keys=True).encode()
    blobs = {hashlib.sha256(b).hexdigest(): b for b in (config, layer_gz)}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + hashlib.sha256(layer_gz).hexdigest(), "size": len(layer_gz)}],
    }, sort_keys=True).encode()
    manifest_digest = hashlib.sha256(manifest).hexdigest()
    blobs[manifest_digest] = manifest
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + manifest_digest,
        "size": len(manifest), "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]},
    }]}
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        _member(tf, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), mode=0o644)
        _member(tf, "index.json", json.dumps(index).encode(), mode=0o644)
        _member(tf, "blobs", kind=tarfile.DIRTYPE)
        _member(tf, "blobs/sha256", kind=tarfile.DIRTYPE)
        for digest, data in blobs.items():
            _member(tf, f"blobs/sha256/{digest}", data, mode=0o644)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    build(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "localhost/sriovkit-pause:1")
