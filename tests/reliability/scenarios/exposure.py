"""5. Exposure: no shell in the product; modes of sockets and state; metrics on loopback."""


from __future__ import annotations

import ast
import os
from pathlib import Path

from tests.reliability.scenarios.rig import (
    Outcome,
)

# -- 5. exposure ----------------------------------------------------------------------------------

SRC = Path(__file__).resolve().parents[3] / "src" / "sriovkit"
SHELLS_AND_TOOLS = {"sh", "bash", "dash", "zsh", "ip", "tc", "ethtool", "devlink", "iptables", "nft", "modprobe",
                    "echo", "cat", "env", "sudo"}


def shell_uses(source: str, filename: str) -> list[str]:
    """Calls that run a shell or a networking tool: shell=True, os.system/popen/spawn*/exec*p,
    and subprocess/os.exec* with a literal argv naming a shell or a tool (`ip`, `tc`, ...)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        where = f"{filename}:{node.lineno}"
        name = ast.unparse(node.func)
        if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
               for k in node.keywords):
            found.append(f"{where}: shell= in {name}")
        if name in ("os.system", "os.popen") or name.startswith(("os.spawn", "pty.")) or name.endswith("execlp"):
            found.append(f"{where}: {name}")
        if (name.startswith("subprocess.") or name.startswith("os.exec")) and node.args:
            program = _literal_program(node.args[-1] if name.startswith("os.exec") else node.args[0])
            if program is not None and os.path.basename(program) in SHELLS_AND_TOOLS:
                found.append(f"{where}: {name} runs {program}")
    return found


def _literal_program(arg: ast.expr) -> str | None:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value.split()[0] if arg.value.split() else arg.value
    if isinstance(arg, (ast.List, ast.Tuple)) and arg.elts:
        first = arg.elts[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def no_shell_in_product() -> Outcome:
    out = Outcome("exposure: no shell or ip tool in src/sriovkit")
    for path in sorted(SRC.rglob("*.py")):
        out.tried += 1
        for hit in shell_uses(path.read_text(), str(path.relative_to(SRC))):
            out.fail(hit, "runs a shell or tool")
    return out


def modes(tmp: Path) -> Outcome:
    """Agent socket 0600 in a 0700 dir, state files 0600 and dirs 0700 (umask 0), metrics on loopback."""
    from sriovkit.agent.metrics import DEFAULT_METRICS_ADDRESS, AgentMetrics, MetricsServer
    from sriovkit.cni.state import AttachmentRecord, StateStore
    from sriovkit.shim.server import CniSocketServer

    out = Outcome("exposure: socket, state and metrics")
    old = os.umask(0)
    try:
        sock = tmp / "run" / "sriovkit" / "cni.sock"
        server = CniSocketServer(sock, lambda env, stdin: (b"", 0))
        server.start()
        checks = {"socket 0600": _mode(sock) == 0o600, "socket dir 0700": _mode(sock.parent) == 0o700}
        server.stop()
        store = StateStore(str(tmp / "state"))
        store.save(AttachmentRecord("c", "n", "/x", "net", "0000:00:01.0", "netdev", complete=False))
        with store.lock("0000:00:01.0", 1):
            checks["lock 0600"] = _mode(tmp / "state" / "locks" / "0000:00:01.0.lock") == 0o600
        checks["journal 0600"] = _mode(tmp / "state" / "c-n.pending") == 0o600
        checks["state dirs 0700"] = _mode(tmp / "state") == _mode(tmp / "state" / "locks") == 0o700
    finally:
        os.umask(old)
    metrics = MetricsServer(":0", AgentMetrics(), lambda: True)
    metrics.start()
    bound = metrics.bound_host
    metrics.stop()
    checks["metrics default loopback"] = DEFAULT_METRICS_ADDRESS.startswith("127.0.0.1:") and bound == "127.0.0.1"
    for what, ok in checks.items():
        out.tried += 1
        if not ok:
            out.fail(what, "wrong")
    return out


def _mode(path: Path) -> int:
    import stat

    return stat.S_IMODE(os.lstat(path).st_mode)
