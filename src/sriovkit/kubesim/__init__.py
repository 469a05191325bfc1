"""A kubelet stand-in speaking the kubelet's real gRPC APIs (see `kubelet`)."""

from sriovkit.kubesim.kubelet import AllocationError, DeviceState, DraEndpoint, Kubelet, PluginEndpoint, Registration

__all__ = ["AllocationError", "DeviceState", "DraEndpoint", "Kubelet", "PluginEndpoint", "Registration"]
