"""Where things live on a Kubernetes node by default: one place for the paths several commands
take as flags (the agent, the CNI, hot-plug, the status commands). Imports nothing, so the CLI
can use them when it builds its parsers."""

RESOURCE_PREFIX = "intel.com"  # upstream's default resourcePrefix, for resources that name none
CNI_STATE_DIR = "/var/lib/cni/sriov"  # the sriov CNI's attachment records and per-VF locks
CNI_SOCKET = "/run/sriovkit/cni.sock"  # the agent serves the `sriov` shim here
CNI_BIN_DIR = "/opt/cni/bin"  # where CNI plugins are installed and looked for
KUBELET_ROOT = "/var/lib/kubelet"
DEVICE_PLUGIN_DIR = f"{KUBELET_ROOT}/device-plugins"  # kubelet.sock and the device plugins' sockets
POD_RESOURCES_SOCKET = f"{KUBELET_ROOT}/pod-resources/kubelet.sock"  # the kubelet's podresources API
PLUGINS_REGISTRY_DIR = f"{KUBELET_ROOT}/plugins_registry"  # the kubelet's plugin watcher
KUBELET_PLUGINS_DIR = f"{KUBELET_ROOT}/plugins"  # a DRA driver's dra.sock lives in <this>/<driver>/
CRI_SOCKET = "/run/containerd/containerd.sock"  # the container runtime's CRI API (hot-plug)
HOTPLUG_STATE_DIR = "/var/lib/sriovkit/hotplug"  # the hot-plug controller's record of attachments
OVS_RUN_DIR = "/var/run/openvswitch"  # where vhost-user socket directories are mounted
POLICY_POOLS_FILE = "/run/sriovkit/policy-pools.json"  # the pools the agent derived from --policy
NETNS_DIR = "/var/run/netns"  # named network namespaces (iproute2's)
DRA_DRIVER_NAME = "sriovnetwork.k8snetworkplumbingwg.io"  # dra-driver-sriov's: its DeviceClasses apply as they are
DRA_STATE_DIR = "/var/lib/sriovkit/dra"  # the DRA driver's checkpoint of prepared claims
CDI_DIR = "/var/run/cdi"  # where the container runtime reads CDI specs
DEVINFO_DIR = "/var/run/k8s.cni.cncf.io/devinfo/dp"  # Multus' device-info files for device-plugin resources

# Upstream's two DaemonSets with only the image swapped (sriovkit.image, docs/upgrade.md): the
# device-plugin pod mounts the host's whole /var/lib/kubelet/ at the same path, so the agent's CNI
# socket and state live under its plugins/ directory (the kubelet does not clear it, as it clears
# device-plugins/), where the `sriov` binary on the host reaches them by the same paths.
UPSTREAM_AGENT_DIR = f"{KUBELET_PLUGINS_DIR}/sriovkit"
UPSTREAM_CNI_SOCKET = f"{UPSTREAM_AGENT_DIR}/cni.sock"
UPSTREAM_CNI_STATE_DIR = f"{UPSTREAM_AGENT_DIR}/cni-state"
# in the agent's own filesystem: the shims' root (sriovkit.shim.callerroot), since upstream's
# device-plugin pod has neither the host's /var/run/netns nor /opt/cni/bin
UPSTREAM_CALLER_ROOT_LINK = "/run/sriovkit/caller-root"
UPSTREAM_CONFIG_FILE = "/etc/pcidp/config.json"  # the device plugin's --config-file default
UPSTREAM_CNI_BIN_MOUNT = "/host/opt/cni/bin"  # where upstream's CNI DaemonSet mounts the host's /opt/cni/bin
CNI_DEVINFO_DIR = "/var/run/k8s.cni.cncf.io/devinfo"  # where the CNI's Device Information files may be (Multus: cni/)
CNI_LOG_DIR = "/var/log"  # where a network config's logFile may be
