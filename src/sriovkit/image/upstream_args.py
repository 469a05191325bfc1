"""The SR-IOV network device plugin's command line, as its image accepts it, read into settings.

Upstream's image runs an entrypoint script that takes `--log-dir`/`--log_dir`, `--log-level`,
`--log-max-size/-files/-age`, `--resource-prefix`, `--config-file` and `--use-cdi`, and passes
them to the Go binary, whose `flag` package (with glog's/klog's flags: `-v`, `--logtostderr`, ...)
accepts `-name` and `--name`, `name=value` and `name value`, and `-bool` / `-bool=false`. Both sets
are accepted here in every one of those spellings; anything else is refused as upstream refuses it.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from sriovkit.errors import UserError
from sriovkit.nodepaths import RESOURCE_PREFIX, UPSTREAM_CNI_BIN_MOUNT, UPSTREAM_CONFIG_FILE

_VALUE_FLAGS = frozenset({"config-file", "resource-prefix", "log-dir", "log_dir", "log-level", "v", "log-max-size",
                          "log-max-files", "log-max-age", "log_file", "log-file", "stderrthreshold", "vmodule",
                          "log_backtrace_at"})
_BOOL_FLAGS = frozenset({"use-cdi", "logtostderr", "alsologtostderr", "h", "help"})
# accepted by upstream, without an effect here (sriovkit logs to stderr, plus --log-dir's file)
_NO_EFFECT = frozenset({"log-max-age", "log_file", "log-file", "stderrthreshold", "vmodule", "log_backtrace_at",
                        "logtostderr", "alsologtostderr"})
_LEVEL_NAMES = ("debug", "info", "warning", "error")
_DP_FLAGS_HELP = ("the device plugin's flags: --config-file, --resource-prefix, --use-cdi, --log-dir, --log-level, "
                  "--log-max-size, --log-max-files, --log-max-age")
# upstream's sriov-cni image: its entrypoint copies --sriov-bin-file into --cni-bin-dir, then sleeps
_CNI_VALUE_FLAGS = frozenset({"cni-bin-dir", "sriov-bin-file"})
_CNI_BOOL_FLAGS = frozenset({"no-sleep", "h", "help"})
_CNI_FLAGS_HELP = "the sriov-cni image's flags: --cni-bin-dir, --sriov-bin-file, --no-sleep"
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # what Go's strconv.ParseBool takes
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


@dataclass(frozen=True, slots=True)
class DevicePluginArgs:
    config_file: str = UPSTREAM_CONFIG_FILE
    resource_prefix: str = RESOURCE_PREFIX
    use_cdi: bool = False
    log_level: str = "debug"  # upstream's entrypoint default is -v 10
    log_dir: str = ""  # "" = stderr only
    log_max_size_mb: int = 100
    log_max_files: int = 5
    help: bool = False
    ignored: list[str] = field(default_factory=list)  # flags accepted without an effect, for one log line


class _DevicePluginFlags(TypedDict, total=False):
    """The DevicePluginArgs fields the flags given set (the others keep their defaults)."""

    config_file: str
    resource_prefix: str
    use_cdi: bool
    log_level: str
    log_dir: str
    log_max_size_mb: int
    log_max_files: int
    help: bool


def _split(argv: list[str], value_flags: frozenset[str] = _VALUE_FLAGS, bool_flags: frozenset[str] = _BOOL_FLAGS,
           known: str = _DP_FLAGS_HELP) -> list[tuple[str, str]]:
    """(flag name, value) pairs in Go's `flag` syntax; bool flags get "true" unless `=value` is given."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break  # Go's flag stops at the first non-flag; upstream's binary ignores what follows
        name, eq, value = (arg[2:] if arg.startswith("--") else arg[1:]), "", ""
        if "=" in name:
            name, eq, value = name.partition("=")
        if not name or name.startswith("-"):
            raise UserError(f"bad flag syntax: {arg}")
        if name in bool_flags:
            if eq and value not in _TRUE | _FALSE:
                raise UserError(f"invalid boolean value {value!r} for -{name}")
            pairs.append((name, "false" if eq and value in _FALSE else "true"))
        elif name in value_flags:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UserError(f"flag needs an argument: -{name}")
                value = argv[i]
            pairs.append((name, value))
        else:
            raise UserError(f"unknown flag {arg} ({known})")
        i += 1
    return pairs


def log_level_name(value: str, flag: str = "--log-level") -> str:
    """A glog/klog verbosity (an integer; upstream's default is 10) or one of our level names."""
    if value.lower() in _LEVEL_NAMES:
        return value.lower()
    try:
        level = int(value, 10)
    except ValueError:
        raise UserError(f"{flag} {value!r}: must be a number (glog verbosity, e.g. 10) "
                        f"or one of {', '.join(_LEVEL_NAMES)}") from None
    if level < 0:
        raise UserError(f"{flag} {value}: must not be negative")
    return "debug" if level >= 3 else "info"  # glog's Info always prints; -v 3 and up is upstream's detail


def _positive(value: str, flag: str) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise UserError(f"--{flag} {value!r}: must be a whole number") from None
    if number < 1:
        raise UserError(f"--{flag} {value}: must be at least 1")
    return number


def parse_device_plugin_args(argv: list[str]) -> DevicePluginArgs:
    values: _DevicePluginFlags = {}
    ignored: list[str] = []
    for name, value in _split(argv):
        if name == "config-file":
            values["config_file"] = value
        elif name == "resource-prefix":
            values["resource_prefix"] = value
        elif name == "use-cdi":
            values["use_cdi"] = value == "true"
        elif name in ("log-level", "v"):
            values["log_level"] = log_level_name(value, f"--{name}")
        elif name in ("log-dir", "log_dir"):
            values["log_dir"] = value
        elif name == "log-max-size":
            values["log_max_size_mb"] = _positive(value, name)
        elif name == "log-max-files":
            values["log_max_files"] = _positive(value, name)
        elif name in ("h", "help"):
            values["help"] = value == "true"
        if name in _NO_EFFECT:
            ignored.append(f"--{name}={value}")
    if values.get("config_file") == "":
        raise UserError("--config-file: must not be empty")
    return DevicePluginArgs(**values, ignored=ignored)


DEFAULT_LOG_DIR = "/var/log/sriovdp"


def log_directory(log_dir: str) -> tuple[str, str]:
    """(where `--log-dir` puts the log file, a warning or ""). Upstream's older entrypoint takes a
    name under /var/log (`--log-dir=sriovdp`), its newer one a path under /var/log
    (`--log_dir=/var/log/sriovdp`) and, as here, falls back to /var/log/sriovdp with a warning
    for anything outside it."""
    if not log_dir:
        return "", ""
    path = (log_dir if log_dir.startswith("/") else f"/var/log/{log_dir}").rstrip("/")
    if ".." in path.split("/") or not (path == "/var/log" or path.startswith("/var/log/")):
        return DEFAULT_LOG_DIR, f"--log-dir {log_dir!r} is not under /var/log; logging to {DEFAULT_LOG_DIR}"
    return path, ""


@dataclass(frozen=True, slots=True)
class CniInstallerArgs:
    cni_bin_dir: str = UPSTREAM_CNI_BIN_MOUNT
    sriov_bin_file: str = ""  # "" = the image's own native binary
    no_sleep: bool = False
    help: bool = False


class _CniInstallerFlags(TypedDict, total=False):
    """The CniInstallerArgs fields the flags given set."""

    cni_bin_dir: str
    sriov_bin_file: str
    no_sleep: bool
    help: bool


def is_cni_installer_args(argv: list[str]) -> bool:
    """Whether these are upstream's sriov-cni image's arguments (none, or any of its own flags)."""
    names = {a.lstrip("-").partition("=")[0] for a in argv if a.startswith("-")}
    return not argv or bool(names & (_CNI_VALUE_FLAGS | {"no-sleep"}))


def parse_cni_installer_args(argv: list[str]) -> CniInstallerArgs:
    values: _CniInstallerFlags = {}
    for name, value in _split(argv, _CNI_VALUE_FLAGS, _CNI_BOOL_FLAGS, _CNI_FLAGS_HELP):
        if name == "cni-bin-dir":
            values["cni_bin_dir"] = value
        elif name == "sriov-bin-file":
            values["sriov_bin_file"] = value
        elif name == "no-sleep":
            values["no_sleep"] = value == "true"
        else:
            values["help"] = value == "true"
    for flag, given in (("cni-bin-dir", values.get("cni_bin_dir")), ("sriov-bin-file", values.get("sriov_bin_file"))):
        if given == "":
            raise UserError(f"--{flag}: must not be empty")
    return CniInstallerArgs(**values)
