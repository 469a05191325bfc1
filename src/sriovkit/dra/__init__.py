"""A DRA (Dynamic Resource Allocation, resource.k8s.io/v1) driver inside the agent.

Pure logic (`slices`, `claimconfig`, `plan`) is separate from I/O (`checkpoint`, `prepare`,
`publisher`, `server`). Device names, attributes and the opaque `VfConfig` follow
k8snetworkplumbingwg/dra-driver-sriov, so its DeviceClasses and CEL selectors work unchanged.
"""
