"""The hot-plug controller: secondary interfaces added to and removed from running pods.

Pure parts: `networks` (interface names for the networks a pod asks for; the annotation
itself is `sriovkit.multus`, shared with the injector), `nad`
(NetworkAttachmentDefinition configs), `status` (network-status entries),
`plan` (desired vs attached -> ordered ADD/DEL actions, backoff).
I/O parts: `kube` (API list/watch, patches, Events), `cri` (the pod's sandbox and
netns over CRI), `cniexec` (running CNI plugins), `podresources` (the pod's own
devices), `vhostuser` (bind mounts), `record` (what was attached, per pod UID).
`controller.HotplugController` joins them; `command` is `sriovctl hotplug`.
"""
