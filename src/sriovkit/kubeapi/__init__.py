"""The kubelet's pod-resources (v1), plugin-registration (v1), DRA plugin (v1, v1beta1) and DRA
health (v1alpha1) gRPC APIs.

The ``.proto`` files here are the kubelet's public definitions (gogoproto
options stripped); the ``*_pb2*.py`` modules are generated from them by
``python -m sriovkit.deviceplugin.api.generate`` and committed.
"""
