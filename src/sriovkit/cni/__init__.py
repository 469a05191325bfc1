"""The `sriov` CNI plugin as a library: the node agent and the standalone plugin share it.

Where things are:

    plugin.py     run_cni(env, stdin, context) and main(): parse, dispatch, answer
    context.py    CniContext (host root, Netlink, driver binder, state dir, lock timeout)
    spec.py       the CNI protocol: versions, commands, error codes, results per version
    env.py        CNI_* validation (names that reach paths are checked here)
    netconf.py    the network config: upstream sriov-cni's fields, defaults, precedence
    device.py     what a deviceID is: VF netdev, VF on a userspace driver, PF passthrough
    attach.py     ADD: the step list; VFs are moved into the pod's namespace here
    detach.py     DEL: the attachment's record, then release.py
    release.py    giving the VF back (DEL, GC, forgotten attachments), also after the pod's namespace is gone
    vfconfig.py   PF-side VF settings: apply the config, restore the snapshot
    lifecycle.py  CHECK, STATUS, GC
    ipam.py       exec of the IPAM plugin from CNI_PATH, per the spec
    state.py      attachment records and per-VF locks (crash-safe files)
    steps.py      Call (one invocation), its IPAM exec, the step runner with undo (ExitStack) used by ADD
    announce.py   gratuitous ARP / unsolicited NA
    deviceinfo.py the Device Information Spec file
    log.py        structured one-line-per-event logs
    faults.py     test-only kill points after each ADD/DEL step (off in production)
"""
