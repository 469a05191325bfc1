"""`sriovkit-entrypoint`, the image's ENTRYPOINT: one image serves upstream's two DaemonSets
unchanged but for `image:` (docs/upgrade.md), and our own manifests, which set `command:`.

The role is told apart by the arguments, as upstream's two images are started:
- no arguments (upstream's sriov-cni DaemonSet sets neither command nor args): install the
  native `sriov` CNI executable into the host's CNI bin dir mounted at /host/opt/cni/bin, set to
  reach the agent at nodepaths.UPSTREAM_CNI_SOCKET, then sleep until SIGTERM. It writes only into
  that mount (upstream's pod has a read-only root and no capabilities).
- flags (upstream's device-plugin DaemonSet: `args: [--log-dir=sriovdp, --log-level=10]`): the
  node agent with upstream's flags and defaults (sriovkit.image.upstream_args), its CNI socket and
  state under the host's /var/lib/kubelet/plugins/, which that DaemonSet mounts.
- anything else: exec'd as given (`sriovctl agent ...` with args only, a shell for debugging).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
from collections.abc import Sequence

from sriovkit import logs, nodepaths, signals
from sriovkit.errors import UserError
from sriovkit.image.upstream_args import (
    CniInstallerArgs,
    DevicePluginArgs,
    is_cni_installer_args,
    log_directory,
    parse_cni_installer_args,
    parse_device_plugin_args,
)

ENV_CNI_BIN_DIR = "SRIOVKIT_CNI_BIN_DIR"  # where the CNI role installs (default /host/opt/cni/bin)
LOG_FILE_NAME = "sriovkit-agent.log"
USAGE = """\
sriovkit image: with no arguments, installs the sriov CNI executable into /host/opt/cni/bin and sleeps
(upstream's sriov-cni DaemonSet; its flags --cni-bin-dir=D, --sriov-bin-file=F, --no-sleep work too);
with the device plugin's flags, runs the node agent (upstream's device-plugin DaemonSet):
  --config-file=F       default /etc/pcidp/config.json
  --resource-prefix=P   default intel.com
  --use-cdi             hand devices over as CDI devices
  --log-dir=D           also log to D (a name or path under /var/log)
  --log-level=N         glog verbosity (upstream's default 10) or debug|info|warning|error
  --log-max-size=MB  --log-max-files=N  --log-max-age=DAYS
anything else is exec'd as a command (sriovctl ...)."""


def install_cni_and_wait(args: CniInstallerArgs, stop: threading.Event) -> int:
    """Upstream's sriov-cni image: the binary into --cni-bin-dir, then sleep (unless --no-sleep)."""
    from sriovkit.shim.install import ShimSettings, install_shim

    if not os.path.isdir(args.cni_bin_dir):
        raise UserError(f"--cni-bin-dir {args.cni_bin_dir}: not a directory (upstream's sriov-cni DaemonSet "
                        "mounts the host's /opt/cni/bin there)")
    path = install_shim(args.cni_bin_dir, ShimSettings(agent_socket=nodepaths.UPSTREAM_CNI_SOCKET,
                                                       state_dir=nodepaths.UPSTREAM_CNI_STATE_DIR, native=True),
                        binary=args.sriov_bin_file or None)
    print(f"sriovkit: installed {path} (native, agent socket {nodepaths.UPSTREAM_CNI_SOCKET})"
          + ("" if args.no_sleep else "; sleeping until SIGTERM"), flush=True)
    if not args.no_sleep:
        stop.wait()
    return 0


def agent_argv(args: DevicePluginArgs) -> list[str]:
    """`sriovctl agent` for upstream's device-plugin pod: its mounts, its defaults."""
    argv = ["agent", f"--config-file={args.config_file}", f"--resource-prefix={args.resource_prefix}",
            f"--cni-socket={nodepaths.UPSTREAM_CNI_SOCKET}", f"--cni-state-dir={nodepaths.UPSTREAM_CNI_STATE_DIR}",
            f"--cni-caller-root-link={nodepaths.UPSTREAM_CALLER_ROOT_LINK}", f"--log-level={args.log_level}"]
    return [*argv, "--use-cdi"] if args.use_cdi else argv


def _setup_logging(args: DevicePluginArgs) -> None:
    """stderr always (what `kubectl logs` shows), plus a rotated file in --log-dir as upstream's."""
    fmt = logs.TextFormatter()
    root = logging.getLogger()
    root.setLevel(args.log_level.upper())
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(fmt)
    stderr.addFilter(logs.ContextFilter())
    root.addHandler(stderr)
    directory, warning = log_directory(args.log_dir)
    if warning:
        logging.warning("%s", warning)
    if directory:
        try:
            os.makedirs(directory, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                os.path.join(directory, LOG_FILE_NAME), maxBytes=args.log_max_size_mb * 1024 * 1024,
                backupCount=args.log_max_files)
        except OSError as exc:  # upstream goes on without its log dir too
            logging.warning("cannot log to %s: %s; logging to stderr only", directory, exc.strerror or exc)
        else:
            handler.setFormatter(fmt)
            handler.addFilter(logs.ContextFilter())
            root.addHandler(handler)
    for flag in args.ignored:
        logging.info("accepted upstream flag %s; it has no effect here", flag)


def run_device_plugin(argv: list[str]) -> int:
    from sriovkit.cli import main as sriovctl

    args = parse_device_plugin_args(argv)
    if args.help:
        print(USAGE)
        return 0
    _setup_logging(args)
    return sriovctl(agent_argv(args))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if is_cni_installer_args(args):
            installer = parse_cni_installer_args(args)
            if installer.help:
                print(USAGE)
                return 0
            if not args and ENV_CNI_BIN_DIR in os.environ:
                installer = CniInstallerArgs(cni_bin_dir=os.environ[ENV_CNI_BIN_DIR])
            with signals.stop_requested() as stop:
                return install_cni_and_wait(installer, stop)
        if args[0].startswith("-"):
            return run_device_plugin(args)
    except UserError as exc:
        for line in exc.lines:
            print(f"sriovkit: {line}", file=sys.stderr)
        return 2
    try:
        os.execvp(args[0], args)
    except OSError as exc:
        print(f"sriovkit: cannot run {args[0]}: {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
