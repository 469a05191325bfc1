"""Where things live on a Kubernetes node by default: one place for the paths several commands
take as flags (the agent, the CNI, hot-plug, the status commands). Imports nothing, so the CLI
can use them when it builds its parsers."""

CNI_STATE_DIR = "/var/lib/cni/sriov"  # the sriov CNI's attachment records and per-VF locks
POD_RESOURCES_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"  # the kubelet's podresources API
PLUGINS_REGISTRY_DIR = "/var/lib/kubelet/plugins_registry"  # the kubelet's plugin watcher
KUBELET_PLUGINS_DIR = "/var/lib/kubelet/plugins"  # a DRA driver's dra.sock lives in <this>/<driver>/
DRA_DRIVER_NAME = "sriovnetwork.k8snetworkplumbingwg.io"  # dra-driver-sriov's: its DeviceClasses apply as they are
DRA_STATE_DIR = "/var/lib/sriovkit/dra"  # the DRA driver's checkpoint of prepared claims
CDI_DIR = "/var/run/cdi"  # where the container runtime reads CDI specs
DEVINFO_DIR = "/var/run/k8s.cni.cncf.io/devinfo/dp"  # Multus' device-info files for device-plugin resources
