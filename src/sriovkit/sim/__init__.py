"""The simulator: a node without SR-IOV hardware, for tests, the demo and benchmarks.

    marker.py     whether a host root is a tree the simulator made (the one check, cheap to import)
    host.py       simulated hosts: a sysfs/dev tree built from a declarative topology spec
    net.py        real interfaces for a simulated host: a Linux bridge per PF, a veth pair per VF
    switch.py     the Netlink port on a simulated host: PF-side VF settings kept by the simulator
    provision.py  the Provisioner port on a simulated host tree (VF count, driver binding, MTU)
    command.py    `sriovctl sim create|destroy`

Only the composition roots (what builds each entry point's ports) choose the simulator; library
code receives ports and never imports this package.
"""
