"""The kubelet's pod-resources (v1) and plugin-registration (v1) gRPC APIs.

The ``.proto`` files here are the kubelet's public definitions (gogoproto
options stripped); the ``*_pb2*.py`` modules are generated from them by
``python -m sriovkit.deviceplugin.api.generate`` and committed.
"""
