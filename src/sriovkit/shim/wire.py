"""The wire protocol between the `sriov` shim and the agent's CNI socket server.

One CNI call per connection. Binary, so the shim needs neither json nor base64 and their imports:
request = u32 length + env block ("KEY=VALUE\\0" repeated, UTF-8), then u32 length + stdin bytes;
reply = i32 exit code + u32 length + stdout bytes. All integers big-endian. The Go shim (shim/
at the repository root, protocol.go) speaks the same.

Standard library only, and only what the shim imports anyway: the Python shim (`client.py`) is
installed as one file, with this module's code written into it by `sriovctl install-cni`
(sriovkit.shim.install), so it runs where sriovkit is not installed.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False  # typing itself would cost the shim an import; mypy honours this name
if TYPE_CHECKING:
    import _socket
    from collections.abc import Callable

    Reader = Callable[[int], bytes]

MAX_FRAME = 16 * 1024 * 1024
MAX_STDIN = 4 * 1024 * 1024
# What a CNI call's environment can hold. The shim forwards only CNI_* and SRIOVKIT_* variables:
# the spec's six, CNI_ARGS (pod name, namespace, UID, IgnoreUnknown...) and our few overrides, a
# few KB in all. Linux caps one variable at 128 KiB (MAX_ARG_STRLEN); no runtime sends more than
# a handful of them. The agent refuses larger blocks from their length alone.
MAX_ENV_BYTES = 256 * 1024
MAX_ENV_VARS = 64
ENV_PREFIXES = ("CNI_", "SRIOVKIT_")
# The CNI error codes the shim and the agent's socket server answer with themselves; written here
# because the shim has only the standard library; sriovkit.cni.spec.ErrorCode takes these values.
CODE_INVALID_ENV = 4  # "invalid necessary environment variables"
CODE_IO_FAILURE = 5  # "failed to decode content" family: we use it for oversized input
CODE_TRY_AGAIN = 11
CODE_INTERNAL = 999  # libcni's ErrInternal: what skel answers for an error of no well-known kind


class EnvBlockError(ValueError):
    """An env block beyond what a CNI call can carry, or not KEY=VALUE entries."""


def encode_request(env: dict[str, str], stdin: bytes) -> bytes:
    block = b"".join(f"{k}={v}".encode("utf-8", "surrogateescape") + b"\0" for k, v in sorted(env.items()))
    return struct.pack(">I", len(block)) + block + struct.pack(">I", len(stdin)) + stdin


def decode_request(read: Reader) -> tuple[dict[str, str], bytes]:
    """`read(n)` returns exactly n bytes; gives (env dict, stdin bytes)."""
    env = decode_env_block(_read_block(read, MAX_ENV_BYTES))
    return env, _read_block(read, MAX_STDIN)


def decode_env_block(block: bytes) -> dict[str, str]:
    """"KEY=VALUE\\0" entries as a dict; EnvBlockError beyond MAX_ENV_BYTES or MAX_ENV_VARS (counted
    before anything is split, so a block of a million tiny variables costs nothing)."""
    if len(block) > MAX_ENV_BYTES:
        raise EnvBlockError(f"CNI environment block of {len(block)} bytes exceeds {MAX_ENV_BYTES}")
    count = block.count(b"\0") + (0 if block.endswith(b"\0") or not block else 1)
    if count > MAX_ENV_VARS:
        raise EnvBlockError(f"CNI environment of {count} variables exceeds the {MAX_ENV_VARS} a CNI call can carry")
    env: dict[str, str] = {}
    for item in block.split(b"\0"):
        if item:
            key, _, value = item.decode("utf-8", "surrogateescape").partition("=")
            env[key] = value
    return env


def encode_reply(stdout: bytes, code: int) -> bytes:
    return struct.pack(">iI", code, len(stdout)) + stdout


def decode_reply(read: Reader) -> tuple[bytes, int]:
    code, length = struct.unpack(">iI", read(8))
    if length > MAX_FRAME:
        raise ValueError(f"reply of {length} bytes exceeds {MAX_FRAME}")
    return read(length), code


def _read_block(read: Reader, limit: int = MAX_FRAME) -> bytes:
    (length,) = struct.unpack(">I", read(4))
    if length > limit:
        raise ValueError(f"frame of {length} bytes exceeds {limit}")
    return read(length)


def exact_reader(sock: _socket.socket) -> Reader:
    def read(n: int) -> bytes:
        chunks: list[bytes] = []
        while n:
            chunk = sock.recv(min(n, 1 << 20))
            if not chunk:
                raise ConnectionError("connection closed by peer")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    return read


def cni_env(environ: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith(ENV_PREFIXES)}


def error_reply(env: object, stdin: bytes, code: int, msg: str, details: str = "") -> tuple[bytes, int]:
    import json  # only on this rare path: it costs the common path ~3 ms

    version = "1.1.0"
    try:
        given = json.loads(stdin).get("cniVersion")
        version = given if isinstance(given, str) and given else version
    except (ValueError, AttributeError, RecursionError):  # whatever the bytes: deep nesting included
        pass
    body: dict[str, object] = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        body["details"] = details
    return json.dumps(body).encode() + b"\n", 1
