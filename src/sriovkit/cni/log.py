"""Structured CNI logs: one line per event, the pod and the device in every line.

Lines go to the stdlib logger ``sriovkit.cni`` (the node agent's log; stderr
for the standalone plugin) and, when the config names a `logFile`, appended to
that file too, each line with one write(2) so concurrent plugins never
interleave inside a line. Levels are upstream's: panic, error, warning, info, debug.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from typing import Any

_LEVELS = {"panic": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING,
           "info": logging.INFO, "debug": logging.DEBUG}
_NAMES = {logging.CRITICAL: "panic", logging.ERROR: "error", logging.WARNING: "warning",
          logging.INFO: "info", logging.DEBUG: "debug"}
_log = logging.getLogger("sriovkit.cni")


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class EventLog:
    """Per-call logger; `bind` adds fields (the PCI address once it is known)."""

    def __init__(self, *, command: str, container: str = "", ifname: str = "", level: str = "info",
                 log_file: str = "") -> None:
        self.fields: dict[str, Any] = {"command": command, "container": container[:12], "ifname": ifname,
                                       "pci": ""}
        self.level = _LEVELS.get(level, logging.INFO)
        self.log_file = log_file

    def bind(self, **fields: Any) -> None:
        self.fields.update(fields)

    def configure(self, *, level: str, log_file: str) -> None:
        self.level = _LEVELS.get(level, logging.INFO)
        self.log_file = log_file

    def debug(self, event: str, **kv: Any) -> None:
        self._emit(logging.DEBUG, event, kv)

    def info(self, event: str, **kv: Any) -> None:
        self._emit(logging.INFO, event, kv)

    def warning(self, event: str, **kv: Any) -> None:
        self._emit(logging.WARNING, event, kv)

    def error(self, event: str, **kv: Any) -> None:
        self._emit(logging.ERROR, event, kv)

    def line(self, level: int, event: str, kv: dict[str, Any]) -> str:
        parts = {"level": _NAMES.get(level, "info"), "event": event, **self.fields, **kv}
        return " ".join(f"{k}={_quote(v)}" for k, v in parts.items())

    def _emit(self, level: int, event: str, kv: dict[str, Any]) -> None:
        if level < self.level:
            return
        text = self.line(level, event, kv)
        _log.log(level, "%s", text)
        if self.log_file:
            self._append(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {text}\n")

    def _append(self, line: str) -> None:
        try:
            fd = open_log_file(self.log_file)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
            _log.warning("cannot open logFile %r: %s", self.log_file, getattr(exc, "strerror", None) or exc)
            return
        try:
            os.write(fd, line.encode(errors="replace"))
        finally:
            os.close(fd)


def open_log_file(path: str) -> int:
    """`logFile` comes from the network config (a NetworkAttachmentDefinition anyone allowed to
    create one may write), and the plugin runs as root: append only to a regular file named by an
    absolute path, never through a symlink, and never open a FIFO or device (a FIFO without a
    reader would block the call for ever; opening some devices has effects of its own)."""
    if not os.path.isabs(path):
        raise OSError(errno.EINVAL, "not an absolute path")
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
    fd = os.open(path, flags, 0o600)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the two looks
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd
