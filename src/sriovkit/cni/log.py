"""Structured CNI logs: one line per event, the pod and the device in every line.

Lines go to the stdlib logger ``sriovkit.cni`` (the node agent's log; stderr
for the standalone plugin) and, when the config names a `logFile`, appended to
that file too, each line with one write(2) so concurrent plugins never
interleave inside a line. Levels are upstream's: panic, error, warning, info, debug.
"""

from __future__ import annotations

import logging
import os
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
            fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            _log.warning("cannot open logFile %s: %s", self.log_file, exc.strerror)
            return
        try:
            os.write(fd, line.encode(errors="replace"))
        finally:
            os.close(fd)
