"""Structured CNI logs: one line per event, the pod and the device in every line.

Lines go to the stdlib logger ``sriovkit.cni`` (the node agent's log; stderr
for the standalone plugin) and, when the config names a `logFile`, appended to
that file too, each line with one write(2) so concurrent plugins never
interleave inside a line. Levels are upstream's: panic, error, warning, info, debug.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from sriovkit import nodepaths
from sriovkit.cni import paths
from sriovkit.logs import json_line, key_values

_LEVELS = {"panic": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING,
           "info": logging.INFO, "debug": logging.DEBUG}
_NAMES = {logging.CRITICAL: "panic", logging.ERROR: "error", logging.WARNING: "warning",
          logging.INFO: "info", logging.DEBUG: "debug"}
_log = logging.getLogger("sriovkit.cni")


class EventLog:
    """Per-call logger; `bind` adds fields (the PCI address once it is known)."""

    def __init__(self, *, command: str, container: str = "", ifname: str = "", level: str = "info",
                 log_file: str = "", log_dir: str = nodepaths.CNI_LOG_DIR) -> None:
        self.fields: dict[str, Any] = {"command": command, "container": container[:12], "ifname": ifname,
                                       "pci": ""}
        self.level = _LEVELS.get(level, logging.INFO)
        self.log_file = log_file
        self.log_dir = log_dir
        self.log_format = "text"
        self._refused = False

    def bind(self, **fields: Any) -> None:
        self.fields.update(fields)

    def configure(self, *, level: str, log_file: str, log_dir: str | None = None, log_format: str = "text") -> None:
        self.level = _LEVELS.get(level, logging.INFO)
        self.log_file = log_file
        self.log_format = log_format
        if log_dir is not None:
            self.log_dir = log_dir

    def debug(self, event: str, **kv: Any) -> None:
        self._emit(logging.DEBUG, event, kv)

    def info(self, event: str, **kv: Any) -> None:
        self._emit(logging.INFO, event, kv)

    def warning(self, event: str, **kv: Any) -> None:
        self._emit(logging.WARNING, event, kv)

    def error(self, event: str, **kv: Any) -> None:
        self._emit(logging.ERROR, event, kv)

    def exception(self, event: str, **kv: Any) -> None:
        """An unexpected failure (a bug): the line, and the traceback after it in the process log."""
        self._emit(logging.ERROR, event, kv, exc_info=True)

    def line(self, level: int, event: str, kv: dict[str, Any]) -> str:
        return key_values({"level": _NAMES.get(level, "info"), "event": event, **self.fields, **kv})

    def _emit(self, level: int, event: str, kv: dict[str, Any], *, exc_info: bool = False) -> None:
        if level < self.level:
            return
        text = self._to_process_log(level, event, kv, exc_info=exc_info)
        if self.log_file:
            self._append(self._file_line(level, event, kv, text))

    def _to_process_log(self, level: int, event: str, kv: dict[str, Any], *, exc_info: bool = False) -> str:
        text = self.line(level, event, kv)
        # the fields ride along for the JSON format (sriovkit.logs); the text is the line itself
        _log.log(level, "%s", text, extra={"event": event, "fields": {**self.fields, **kv}}, exc_info=exc_info)
        return text

    def _file_line(self, level: int, event: str, kv: dict[str, Any], text: str) -> str:
        """The logFile's line: `time key=value...`, or with `logFormat: json` one JSON object."""
        if self.log_format == "json":
            return json_line(time.time(), _NAMES.get(level, "info"), _log.name, event, {**self.fields, **kv}) + "\n"
        return f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {text}\n"

    def _append(self, line: str) -> None:
        if self._refused:
            return
        try:
            fd = open_log_file(self.log_file, self.log_dir)
        except (OSError, paths.PathRefused) as exc:
            self._refused = True  # said once per call, not once per line (this line is not appended)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            # whatever the call's logLevel: the config asked for a file it does not get
            self._to_process_log(logging.WARNING, f"logFile {json.dumps(self.log_file)} not written: it {reason} "
                                 f"(a logFile must be a regular file inside {self.log_dir})", {})
            return
        try:
            os.write(fd, line.encode(errors="replace"))
        finally:
            os.close(fd)


def open_log_file(path: str, log_dir: str) -> int:
    """`logFile` comes from the network config (a NetworkAttachmentDefinition anyone allowed to
    create one may write), and the plugin runs as root: append only to a regular file of its own
    (not a hard link) inside the node's log directory, reached without following a symlink, and
    never open a FIFO or device (a FIFO without a reader would block the call for ever; opening
    some devices has effects of its own). A logFile elsewhere is not written, and the call goes on:
    a log path never fails an attachment, as upstream's never does."""
    return paths.open_for_append(log_dir, paths.components_below(path, log_dir))
