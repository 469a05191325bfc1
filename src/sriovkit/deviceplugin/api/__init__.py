"""The kubelet's device-plugin gRPC API (v1beta1): the .proto and its generated modules."""
