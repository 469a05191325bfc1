"""Where things live on a Kubernetes node by default: one place for the paths several commands
take as flags (the agent, the CNI, hot-plug, the status commands). Imports nothing, so the CLI
can use them when it builds its parsers."""

CNI_STATE_DIR = "/var/lib/cni/sriov"  # the sriov CNI's attachment records and per-VF locks
POD_RESOURCES_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"  # the kubelet's podresources API
