"""Write the `sriov` shim into a CNI bin directory with its settings filled in."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sriovkit.errors import UserError

SHIM_SOURCE = Path(__file__).with_name("client.py")
DEFAULT_SOCKET = "/run/sriovkit/cni.sock"


@dataclass(frozen=True, slots=True)
class ShimSettings:
    agent_socket: str = DEFAULT_SOCKET
    fallback_python: str = ""  # "" disables the in-process fallback
    log_file: str = ""
    interpreter: str = "/usr/bin/python3"
    host_root: str = ""  # the agent's --host-root, for the fallback path
    state_dir: str = ""  # the agent's --cni-state-dir, for the fallback path


def render_shim(settings: ShimSettings) -> str:
    """The shim's source with its settings block and interpreter line replaced."""
    text = SHIM_SOURCE.read_text()
    text = re.sub(r"^#!.*$", f"#!{settings.interpreter} -IS", text, count=1, flags=re.M)
    for name, value in (("AGENT_SOCKET", settings.agent_socket), ("FALLBACK_PYTHON", settings.fallback_python),
                        ("LOG_FILE", settings.log_file), ("HOST_ROOT", settings.host_root),
                        ("STATE_DIR", settings.state_dir)):
        text, count = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", text, count=1, flags=re.M)
        if count != 1:
            raise RuntimeError(f"shim source has no {name} setting")  # a packaging bug, not user input
    return text


def install_shim(dest_dir: str | Path, settings: ShimSettings, *, name: str = "sriov") -> Path:
    """Atomically replace `dest_dir/name`: a runtime exec'ing it mid-upgrade sees old or new, never half."""
    dest = Path(dest_dir)
    if not dest.is_dir():
        raise UserError(f"--dest {dest}: not a directory")
    if not os.access(settings.interpreter, os.X_OK):
        raise UserError(f"--python {settings.interpreter}: not an executable interpreter")
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(render_shim(settings))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest / name


def default_fallback_python() -> str:
    """This interpreter: it has sriovkit and its dependencies installed."""
    return sys.executable
