"""Write the `sriov` CNI executable into a CNI bin directory with its settings filled in.

Two forms, the same wire protocol and behaviour (tests run both):
- native (the default of `sriovctl install-cni`): the static Go program built from `shim/` at the
  repository root, which needs nothing on the host. Its settings live in a block of bytes inside
  the binary between two markers (shim/settings.go); installing rewrites that block in a copy,
  so one file carries its configuration and no compiler is needed at install time.
- python (`--python-shim`): `client.py` with its settings block rewritten, for hosts that have
  Python 3.8+ and no room for a binary.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from sriovkit import atomicfile, nodepaths
from sriovkit.errors import UserError

SHIM_SOURCE = Path(__file__).with_name("client.py")
WIRE_SOURCE = Path(__file__).with_name("wire.py")  # written into the Python shim where it imports it
_WIRE_IMPORT = re.compile(r"^# --- the wire codec.*?^# --- end of the wire codec -*$", re.M | re.S)
DEFAULT_SOCKET = nodepaths.CNI_SOCKET
NATIVE_ENV = "SRIOVKIT_SHIM_BINARY"  # overrides where the built native shim is looked for
NATIVE_MARKER = b"#sriovkit-shim-settings-v1\n"
NATIVE_END = b"#end-sriovkit-shim-settings\n"


@dataclass(frozen=True, slots=True)
class ShimSettings:
    agent_socket: str = DEFAULT_SOCKET
    fallback_python: str = ""  # "" disables the in-process fallback
    log_file: str = ""
    interpreter: str = "/usr/bin/python3"  # the Python shim's #! line (unused by the native one)
    host_root: str = ""  # the agent's --host-root, for the fallback path
    state_dir: str = ""  # the agent's --cni-state-dir, for the fallback path
    devinfo_dir: str = ""  # the agent's --cni-devinfo-dir, for the fallback path
    log_dir: str = ""  # the agent's --cni-log-dir, for the fallback path
    connect_timeout: float = 2.0  # to connect, and for the agent to take the call
    reply_timeout: float = 300.0  # for the agent's answer once it took the call
    native: bool = False  # the static binary instead of the Python script


def native_shim_binary() -> Path:
    """Where the built native shim is: $SRIOVKIT_SHIM_BINARY, else PREFIX/libexec/sriovkit/sriov of
    this installation (`./dev setup` builds it into the venv, the image into /opt/sriovkit)."""
    explicit = os.environ.get(NATIVE_ENV)
    return Path(explicit) if explicit else Path(sys.prefix) / "libexec" / "sriovkit" / "sriov"


def _fields(settings: ShimSettings) -> list[tuple[str, str, str]]:
    """(setting name, value, the flag a user sets it with)."""
    return [("agent_socket", settings.agent_socket, "--agent-socket"),
            ("fallback_python", settings.fallback_python, "--fallback-python"),
            ("log_file", settings.log_file, "--log-file"), ("host_root", settings.host_root, "--host-root"),
            ("state_dir", settings.state_dir, "--state-dir"),
            ("devinfo_dir", settings.devinfo_dir, "--devinfo-dir"), ("log_dir", settings.log_dir, "--log-dir")]


def _check(settings: ShimSettings) -> None:
    for _, value, flag in _fields(settings):
        if "\n" in value or "\0" in value:
            raise UserError(f"{flag} {value!r}: must not contain a newline or NUL")
    for seconds, flag in ((settings.connect_timeout, "--connect-timeout"), (settings.reply_timeout, "--reply-timeout")):
        if not 0 < seconds <= 86400:
            raise UserError(f"{flag} {seconds:g}: must be between 0 and 86400 seconds")
    if not settings.agent_socket:
        raise UserError("--agent-socket: must not be empty")


def render_shim(settings: ShimSettings) -> str:
    """The Python shim's source with its settings block and interpreter line replaced."""
    text = _inline_wire(SHIM_SOURCE.read_text())
    text = re.sub(r"^#!.*$", f"#!{settings.interpreter} -IS", text, count=1, flags=re.M)
    values: list[tuple[str, object]] = [(name.upper(), value) for name, value, _ in _fields(settings)]
    values += [("CONNECT_TIMEOUT", float(settings.connect_timeout)), ("REPLY_TIMEOUT", float(settings.reply_timeout))]
    for name, value in values:
        text, count = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", text, count=1, flags=re.M)
        if count != 1:
            raise RuntimeError(f"shim source has no {name} setting")  # a packaging bug, not user input
    return text


def _inline_wire(text: str) -> str:
    """The shim's import of `sriovkit.shim.wire` replaced by that module's code (less its
    `from __future__` line, which the shim has at its top), so the installed file stands alone."""
    code = WIRE_SOURCE.read_text().replace("from __future__ import annotations\n", "", 1)
    text, count = _WIRE_IMPORT.subn(lambda _: code.strip() + "\n", text, count=1)
    if count != 1:
        raise RuntimeError("shim source has no wire codec import block")  # a packaging bug, not user input
    return text


def render_native_shim(binary: bytes, settings: ShimSettings) -> bytes:
    """The native shim with its settings block rewritten (same length, NUL-padded)."""
    start, end = binary.find(NATIVE_MARKER), binary.find(NATIVE_END)
    if start < 0 or end < start or binary.count(NATIVE_MARKER) != 1 or binary.count(NATIVE_END) != 1:
        raise RuntimeError("native shim has no single settings block")  # a build bug, not user input
    lines = [f"{name}={value}\n" for name, value, _ in _fields(settings) if value]
    lines += [f"connect_timeout={settings.connect_timeout:g}\n", f"reply_timeout={settings.reply_timeout:g}\n"]
    block = NATIVE_MARKER + "".join(lines).encode("utf-8", "surrogateescape")
    room = end - start
    if len(block) > room:
        raise UserError(f"the shim's settings take {len(block)} bytes; at most {room} fit (shorter paths, please)")
    return binary[:start] + block + b"\0" * (room - len(block)) + binary[end:]


def install_shim(dest_dir: str | Path, settings: ShimSettings, *, name: str = "sriov",
                 binary: str | Path | None = None) -> Path:
    """Atomically replace `dest_dir/name`: a runtime exec'ing it mid-upgrade sees old or new, never half.
    `binary`: the built native shim to install from (default native_shim_binary())."""
    dest = Path(dest_dir)
    if not dest.is_dir():
        raise UserError(f"--dest {dest}: not a directory")
    _check(settings)
    if settings.native:
        source = Path(binary) if binary else native_shim_binary()
        try:
            data = render_native_shim(source.read_bytes(), settings)
        except OSError as exc:
            raise UserError(f"native shim {source}: {exc.strerror or exc} (build it with ./dev setup, "
                            f"point {NATIVE_ENV} at it, or install the Python shim with --python-shim)") from None
    else:
        if not os.access(settings.interpreter, os.X_OK):
            raise UserError(f"--python {settings.interpreter}: not an executable interpreter")
        data = render_shim(settings).encode()
    atomicfile.replace(dest / name, data, mode=0o755)
    return dest / name


def default_fallback_python() -> str:
    """This interpreter: it has sriovkit and its dependencies installed."""
    return sys.executable
