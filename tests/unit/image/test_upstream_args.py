"""Upstream's device-plugin flags, in every spelling Go's flag package and upstream's entrypoint
accept, read into the agent's settings; what upstream refuses is refused with one line."""

from __future__ import annotations

import pytest

from sriovkit.errors import UserError
from sriovkit.image.entrypoint import agent_argv
from sriovkit.image.upstream_args import (
    CniInstallerArgs,
    DevicePluginArgs,
    is_cni_installer_args,
    log_directory,
    parse_cni_installer_args,
    parse_device_plugin_args,
)
from sriovkit.nodepaths import UPSTREAM_CALLER_ROOT_LINK, UPSTREAM_CNI_SOCKET, UPSTREAM_CNI_STATE_DIR


def test_upstreams_daemonset_args_with_upstreams_defaults():
    args = parse_device_plugin_args(["--log-dir=sriovdp", "--log-level=10"])
    assert args.config_file == "/etc/pcidp/config.json" and args.resource_prefix == "intel.com"
    assert args.log_dir == "sriovdp" and args.log_level == "debug" and not args.use_cdi
    assert agent_argv(args) == ["agent", "--config-file=/etc/pcidp/config.json", "--resource-prefix=intel.com",
                                f"--cni-socket={UPSTREAM_CNI_SOCKET}", f"--cni-state-dir={UPSTREAM_CNI_STATE_DIR}",
                                f"--cni-caller-root-link={UPSTREAM_CALLER_ROOT_LINK}", "--log-level=debug"]


@pytest.mark.parametrize("argv", [
    ["--log-level=10", "--config-file=/c.json", "--resource-prefix=acme.io", "--use-cdi"],
    ["-log-level", "10", "-config-file", "/c.json", "-resource-prefix", "acme.io", "-use-cdi"],
    ["--log-level", "10", "--config-file", "/c.json", "--resource-prefix=acme.io", "--use-cdi=true"],
    ["-v=10", "-config-file=/c.json", "--resource-prefix", "acme.io", "-use-cdi=1", "--logtostderr"],
    ["--use-cdi=false", "--use-cdi", "--config-file=/c.json", "--resource-prefix=acme.io", "-v", "10"],
])
def test_every_go_flag_spelling_means_the_same(argv):
    args = parse_device_plugin_args(argv)
    assert (args.config_file, args.resource_prefix, args.use_cdi, args.log_level) == ("/c.json", "acme.io", True,
                                                                                      "debug")
    assert agent_argv(args)[-1] == "--use-cdi"


@pytest.mark.parametrize(("value", "level"), [("0", "info"), ("2", "info"), ("3", "debug"), ("10", "debug"),
                                              ("warning", "warning"), ("INFO", "info")])
def test_numeric_log_levels_are_glog_verbosity(value, level):
    assert parse_device_plugin_args([f"--log-level={value}"]).log_level == level


def test_flags_upstream_takes_without_an_effect_here_are_accepted_and_reported():
    args = parse_device_plugin_args(["--log-max-age=30", "--alsologtostderr", "--log_dir=/var/log/x",
                                     "--log-max-size=7", "--log-max-files", "2", "--", "extra"])
    assert args.ignored == ["--log-max-age=30", "--alsologtostderr=true"]
    assert (args.log_dir, args.log_max_size_mb, args.log_max_files) == ("/var/log/x", 7, 2)


def test_go_flag_stops_at_the_first_non_flag():
    assert parse_device_plugin_args(["--use-cdi", "positional", "--bogus"]).use_cdi


@pytest.mark.parametrize(("argv", "message"), [
    (["--bogus"], "unknown flag --bogus"),
    (["--log-level=loud"], "--log-level 'loud': must be a number"),
    (["--log-level=-1"], "must not be negative"),
    (["--config-file"], "flag needs an argument: -config-file"),
    (["--use-cdi=maybe"], "invalid boolean value 'maybe' for -use-cdi"),
    (["---x"], "bad flag syntax: ---x"),
    (["--log-max-files=0"], "--log-max-files 0: must be at least 1"),
    (["--config-file="], "--config-file: must not be empty"),
])
def test_what_upstream_refuses_is_refused_in_one_line(argv, message):
    with pytest.raises(UserError) as exc:
        parse_device_plugin_args(argv)
    assert len(exc.value.lines) == 1 and message in exc.value.lines[0]


@pytest.mark.parametrize(("value", "expected"), [
    ("", ("", "")), ("sriovdp", ("/var/log/sriovdp", "")), ("/var/log/sriovdp/", ("/var/log/sriovdp", "")),
    ("/var/log", ("/var/log", "")),
    ("/etc", ("/var/log/sriovdp", "--log-dir '/etc' is not under /var/log; logging to /var/log/sriovdp")),
    ("../../etc", ("/var/log/sriovdp", "--log-dir '../../etc' is not under /var/log; logging to /var/log/sriovdp")),
])
def test_log_dir_as_upstreams_old_and_new_entrypoints_take_it(value, expected):
    assert log_directory(value) == expected


def test_defaults_are_upstreams():
    assert parse_device_plugin_args([]) == DevicePluginArgs()


@pytest.mark.parametrize(("argv", "expected"), [
    ([], CniInstallerArgs()),
    (["--cni-bin-dir=/host/opt/cni/bin", "--no-sleep"], CniInstallerArgs(no_sleep=True)),
    (["-cni-bin-dir", "/x", "--sriov-bin-file=/usr/bin/sriov"], CniInstallerArgs("/x", "/usr/bin/sriov")),
])
def test_upstreams_cni_image_arguments(argv, expected):
    assert is_cni_installer_args(argv) and parse_cni_installer_args(argv) == expected


def test_the_two_roles_are_told_apart_by_their_flags():
    assert not is_cni_installer_args(["--log-level=10"]) and not is_cni_installer_args(["--use-cdi"])
    with pytest.raises(UserError, match="unknown flag --log-level=10 .the sriov-cni image's flags"):
        parse_cni_installer_args(["--no-sleep", "--log-level=10"])


def test_the_cni_role_installs_and_with_no_sleep_returns(tmp_path, capsys):
    from sriovkit.image.entrypoint import main
    from sriovkit.shim.install import native_shim_binary

    assert main([f"--cni-bin-dir={tmp_path}", "--no-sleep"]) == 0
    installed = (tmp_path / "sriov").read_bytes()
    assert installed[:4] == b"\x7fELF" and f"agent_socket={UPSTREAM_CNI_SOCKET}\n".encode() in installed
    assert main([f"--cni-bin-dir={tmp_path}", f"--sriov-bin-file={native_shim_binary()}", "--no-sleep"]) == 0
    capsys.readouterr()
    assert main([f"--cni-bin-dir={tmp_path / 'nope'}", "--no-sleep"]) == 2
    assert main([f"--cni-bin-dir={tmp_path}", f"--sriov-bin-file={tmp_path / 'nope'}", "--no-sleep"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and "not a directory" in errors[0] and "nope" in errors[1]
