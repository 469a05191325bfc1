"""Every `sriovctl` subcommand, one module per command (or family of commands).

Each module defines `register(subparsers)` (the command's flags, listed in
`sriovkit.cli._COMMAND_MODULES`) and the function that runs it. That function is the command's
composition root: it builds the ports the library code works through (sysfs, netlink, the
provisioner and driver binder, the CNI state store, ...) from the command's flags and hands
them in.
Module level imports nothing heavy (`sriovctl --help` must start fast).

    inventory    discover, pools          sim          sim create|destroy (sriovkit.sim)
    install_cni  install-cni              provision    provision
    agent        agent                    kubesim      kubesim
    demo         demo                     hotplug      hotplug
    status       attachments, allocations injector     injector
    claims       claims
"""
