"""The process log: text lines (the default) or one JSON object per line, with context fields.

Two ways a line gets its context fields (pod, network, claim, PCI address...):
- a record made with ``extra={"event": ..., "fields": {...}}`` (the CNI's `EventLog`) carries them
  itself; its text message already shows them as ``key=value``;
- `context(...)` binds fields for the code running inside it (this thread, this task), and every
  record logged there gets them (`ContextFilter`, on the handler `setup` installs): the text format
  appends them as ``key=value`` after the message.

`--log-format json` (`setup(level, "json")`) writes ``{"time", "level", "logger", "msg", ...fields}``
per line; a traceback goes into ``"error"`` rather than across lines.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LEVELS = ("debug", "info", "warning", "error")
_NONE: Mapping[str, Any] = types.MappingProxyType({})
_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("sriovkit_log_context", default=_NONE)
_LEVEL_NAMES = {logging.CRITICAL: "panic", logging.ERROR: "error", logging.WARNING: "warning",
                logging.INFO: "info", logging.DEBUG: "debug"}


def quote(value: Any) -> str:
    """A value for a ``key=value`` text line: quoted when empty or holding a space, quote, = or newline."""
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def key_values(fields: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={quote(v)}" for k, v in fields.items())


@contextlib.contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Fields every line logged inside carries (nested contexts add to the outer one's)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> Mapping[str, Any]:
    return _CONTEXT.get()


class ContextFilter(logging.Filter):
    """Stamps each record with the fields of `context(...)` where it was logged (`record.context`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "context"):
            record.context = dict(_CONTEXT.get())
        return True


def _context_of(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "context", None)
    return dict(fields) if isinstance(fields, Mapping) else dict(_CONTEXT.get())


def _own_fields(record: logging.LogRecord) -> dict[str, Any] | None:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, Mapping) else None


class TextFormatter(logging.Formatter):
    """The default: ``time LEVEL logger message key=value...`` (the context after the message)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        if _own_fields(record) is not None:  # an EventLog line shows its fields already
            return text
        extra = _context_of(record)
        return f"{text} {key_values(extra)}" if extra else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, msg, then the context fields."""

    def format(self, record: logging.LogRecord) -> str:
        own = _own_fields(record)
        msg = str(getattr(record, "event", "")) if own is not None else record.getMessage()
        fields = {**_context_of(record), **(own or {})}
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        return json_line(record.created, _LEVEL_NAMES.get(record.levelno, record.levelname.lower()), record.name,
                         msg, fields)


def json_line(created: float, level: str, logger: str, msg: str, fields: Mapping[str, Any]) -> str:
    """One log line as a JSON object: time (UTC, ms), level, logger, msg, then `fields` (which
    never replace those four)."""
    body: dict[str, Any] = {
        "time": datetime.datetime.fromtimestamp(created, datetime.UTC).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "level": level, "logger": logger, "msg": msg,
    }
    for key, value in fields.items():
        body.setdefault(key, value)
    return json.dumps(body, default=str, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return TextFormatter()


def setup(level: str, log_format: str = "text") -> None:
    """The process's stderr log, as `logging.basicConfig` would (nothing added when the root logger
    already has a handler, e.g. the image's entrypoint set one up), in `log_format`."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(formatter(log_format))
    root.addHandler(handler)
    root.setLevel(level.upper())


def cni_call_fields(env: Mapping[str, str]) -> dict[str, str]:
    """The fields every line about one CNI call carries, from its raw environment (a refused one
    too): command, container (12 characters), ifname, the pod as ``namespace/name`` from CNI_ARGS'
    K8S_POD_NAMESPACE and K8S_POD_NAME (as Kubernetes names an object in its logs), and netns."""
    args: dict[str, str] = {}
    for pair in env.get("CNI_ARGS", "").split(";"):
        key, _, value = pair.partition("=")
        args[key.strip()] = value.strip()
    namespace, name = args.get("K8S_POD_NAMESPACE", ""), args.get("K8S_POD_NAME", "")
    return {"command": env.get("CNI_COMMAND", ""), "container": env.get("CNI_CONTAINERID", "")[:12],
            "ifname": env.get("CNI_IFNAME", ""), "pod": f"{namespace}/{name}" if name else "",
            "netns": env.get("CNI_NETNS", "")}


def add_arguments(parser: Any) -> None:
    """`--log-level` and `--log-format` on a command's argparse parser."""
    parser.add_argument("--log-level", default="info", choices=LEVELS)
    parser.add_argument("--log-format", default="text", choices=FORMATS,
                        help="text lines (default) or one JSON object per line (time, level, logger, msg and "
                        "the context fields: pod, container, ifname, pci, netns, network, claim...)")
