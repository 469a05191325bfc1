"""Entry points of the `sriov` CNI plugin.

`run_cni(env, stdin, context)` is the whole plugin as a function: the node
agent calls it from worker threads, and `main(compose)` (the `sriov` console
script and ``python -m sriovkit.cni.plugin``, through their composition root
`sriovkit.commands.cni_plugin`) calls it once per process. Both print the
same bytes for the same input. Every failure becomes the spec's error JSON on
stdout with exit status 1.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Mapping

from sriovkit import logs
from sriovkit.cni.context import CniContext
from sriovkit.cni.env import CniEnv, parse_env
from sriovkit.cni.faults import FaultPoints
from sriovkit.cni.log import EventLog
from sriovkit.cni.netconf import NetConf, decode, parse_netconf, read_device_id, read_version
from sriovkit.cni.spec import (
    LATEST_VERSION,
    CniError,
    ErrorCode,
    Result,
    check_version,
    dumps,
    render_result,
    version_reply,
)
from sriovkit.cni.state import ForeignRecord
from sriovkit.cni.steps import Call

__all__ = ["MAX_STDIN", "CniContext", "main", "run_cni"]
MAX_STDIN = 4 * 1024 * 1024  # as the shim's: a network config is a few KiB; more is not one
_log = logging.getLogger("sriovkit.cni")


def run_cni(env: Mapping[str, str], stdin: bytes, context: CniContext) -> tuple[bytes, int]:
    """One CNI call: (stdout bytes, exit status). Thread-safe; per-VF work is serialised by locks."""
    if len(stdin) > MAX_STDIN:  # refused before parsing: JSON of that size costs memory and time
        return dumps(CniError(ErrorCode.IO_FAILURE, f"network config on stdin exceeds {MAX_STDIN} bytes",
                              f"got {len(stdin)} bytes").to_json(LATEST_VERSION)), 1
    version = _lenient_version(stdin)  # errors answer in the caller's version when it can be read
    log = call_log(env)
    try:
        cni_env = parse_env(env, context.netns_exists)
        if cni_env.command == "VERSION":
            return dumps(version_reply(version)), 0
        result = _dispatch(cni_env, stdin, version, context, log)
    except CniError as exc:
        # every failure once, whichever step found it (the environment, the config, the node)
        if not log.fields.get("pci"):  # a config refused before its deviceID was taken: as it says
            log.bind(pci=read_device_id(stdin) or "")
        log.error("failed", code=exc.code, msg=exc.msg, details=exc.details)
        return dumps(exc.to_json(version)), 1
    except Exception as exc:  # the top of the call: a bug must still answer in the spec's form
        log.exception("unexpected failure", error=repr(exc))
        return dumps(CniError(ErrorCode.INTERNAL, "internal error in the sriov plugin", repr(exc)).to_json(version)), 1
    if result is None:
        return b"", 0
    return dumps(render_result(result, version)), 0


def _lenient_version(stdin: bytes) -> str:
    return read_version(stdin) or LATEST_VERSION


def _parse_config(env: CniEnv, stdin: bytes, version: str) -> NetConf:
    data = decode(stdin)
    check_version(version, env.command)
    return parse_netconf(data, cni_args=env.args, need_device=env.command == "ADD")


def _config_for_del(env: CniEnv, context: CniContext, problem: CniError, log: EventLog) -> NetConf | None:
    """A DEL whose config is unusable: with nothing attached there is nothing to do, and failing
    would keep the runtime from ever removing the pod (its ADD failed on the same config). With a
    record, the config ADD accepted is used instead."""
    try:
        record = context.store.load(env.container_id, env.ifname, pending=True)
    except ForeignRecord:
        record = None  # another attachment's file: nothing of this one is attached
    if record is None:  # one whose if0name named the interface is kept under that name
        record = next((r for r in context.store.records(pending=True)
                       if (r.container_id, r.runtime_ifname) == (env.container_id, env.ifname)), None)
    if record is None:
        log.warning("DEL with an unusable config and nothing attached: success", problem=str(problem))
        return None
    try:
        return parse_netconf(record.config, cni_args=env.args, need_device=False)
    except CniError:
        raise problem from None


def call_log(env: Mapping[str, str]) -> EventLog:
    """The call's log, from the raw environment (it must also log an environment that is refused):
    its container, interface, pod (namespace/name from CNI_ARGS) and netns (`logs.cni_call_fields`)."""
    fields = logs.cni_call_fields(env)
    log = EventLog(command=fields["command"], container=fields["container"], ifname=fields["ifname"])
    log.bind(pod=fields["pod"], netns=fields["netns"])
    return log


def _dispatch(env: CniEnv, stdin: bytes, version: str, context: CniContext, log: EventLog) -> Result | None:
    try:
        conf = _parse_config(env, stdin, version)
    except CniError as exc:
        if env.command != "DEL":
            raise
        recovered = _config_for_del(env, context, exc, log)
        if recovered is None:
            return None
        conf = recovered
    log.configure(level=conf.log_level, log_file=conf.log_file, log_dir=context.log_dir, log_format=conf.log_format)
    if conf.pod_ifname and env.ifname and conf.pod_ifname != env.ifname:  # the seeds' if0name
        env = dataclasses.replace(env, ifname=conf.pod_ifname, runtime_ifname=env.ifname)
        log.bind(ifname=env.ifname)
    log.bind(pci=conf.device_id or "")  # DEL, CHECK and GC without a deviceID learn it from the record
    call = Call(ctx=context, env=env, conf=conf, log=log, faults=FaultPoints(context.fault_hook))
    log.debug("called", network=conf.name, version=conf.cni_version)
    _warn_ignored(conf, log, context)
    with context.netlink.operation():  # one socket per pod namespace for the whole call
        return _run_command(call)


def _warn_ignored(conf: NetConf, log: EventLog, context: CniContext) -> None:
    """What upstream ignores silently (unknown fields...): one warning line each, and counted."""
    for warning in conf.warnings:
        log.warning("netconf field ignored", network=conf.name, detail=warning)
    if conf.warnings and context.on_config_warnings is not None:
        context.on_config_warnings("netconf", len(conf.warnings))


def load_commands() -> None:
    """Import what `_run_command` imports on first use (a standalone process pays only for its one
    command; a long-running agent takes them all at start: `agent.cni_service.CniWarmUp`)."""
    import sriovkit.cni.attach
    import sriovkit.cni.detach
    import sriovkit.cni.lifecycle  # noqa: F401


def _run_command(call: Call) -> Result | None:
    command = call.env.command
    if command == "ADD":
        from sriovkit.cni.attach import attach

        return attach(call)
    if command == "DEL":
        from sriovkit.cni.detach import detach

        detach(call)
        return None
    from sriovkit.cni import lifecycle

    if command == "CHECK":
        lifecycle.check(call)
    elif command == "STATUS":
        lifecycle.status(call)
    elif command == "GC":
        lifecycle.gc(call)
    else:  # parse_env admits only known commands
        raise CniError(ErrorCode.INVALID_ENV, f"CNI_COMMAND {command!r} is not handled")
    return None


def main(compose: Callable[[Mapping[str, str]], CniContext]) -> None:
    """The standalone plugin: os.environ and stdin in, the answer on stdout, the status as exit code.
    `compose` builds the node's ports from the environment (`sriovkit.commands.cni_plugin`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s sriov %(message)s"))
    _log.addHandler(handler)
    _log.setLevel(logging.DEBUG)  # each call's EventLog applies the config's logLevel
    env = dict(os.environ)
    stdin = sys.stdin.buffer.read(MAX_STDIN + 1)  # run_cni refuses more; never read an unbounded stream
    try:
        context = _standalone_context(env, compose)
    except CniError as exc:
        sys.stdout.buffer.write(dumps(exc.to_json(LATEST_VERSION)))
        sys.stdout.buffer.flush()
        sys.exit(1)
    out, code = run_cni(env, stdin, context)
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    sys.exit(code)


def _standalone_context(env: Mapping[str, str], compose: Callable[[Mapping[str, str]], CniContext]) -> CniContext:
    try:
        return compose(env)
    except Exception as exc:  # the runtime must get the spec's error, never a bare traceback
        call_log(env).exception("cannot open the node", error=repr(exc))
        raise CniError(ErrorCode.NOT_AVAILABLE, "cannot open the node for the sriov plugin", str(exc)) from None


if __name__ == "__main__":  # `python -m sriovkit.cni.plugin`: what the shims' fallback runs
    from sriovkit.commands.cni_plugin import main as standalone_main

    standalone_main()
