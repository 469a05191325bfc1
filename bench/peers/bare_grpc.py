"""The floor of a Python device plugin: grpcio's server answering Allocate with a fixed answer.

    python bench/peers/bare_grpc.py [--metrics] SOCKET

Serves the DevicePlugin service on SOCKET (sync server, thread pool, as the agent's), answers
GetDevicePluginOptions and Allocate (the same envs the agent gives one `intel.com/net` VF, built
from the request), until SIGTERM. bench/deviceplugin.py measures it with the same Allocate client
as both plugins: what no Python plugin can go below on this machine, and its memory. With
`--metrics`, it also serves prometheus_client's default registry on a loopback port, as the agent
serves its metrics: what the dependencies a sriovkit agent must have cost before any code of ours.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc

from sriovkit.deviceplugin.api import deviceplugin_pb2 as pb
from sriovkit.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc


class Fixed(pb_grpc.DevicePluginServicer):
    def GetDevicePluginOptions(self, request: pb.Empty, context: Any) -> pb.DevicePluginOptions:
        return pb.DevicePluginOptions()

    def Allocate(self, request: pb.AllocateRequest, context: Any) -> pb.AllocateResponse:
        answers = []
        for req in request.container_requests:
            ids = ",".join(req.devices_ids)
            info = "{" + ",".join(f'"{i}":{{"generic":{{"deviceID":"{i}"}}}}' for i in req.devices_ids) + "}"
            answers.append(pb.ContainerAllocateResponse(envs={"PCIDEVICE_INTEL_COM_NET": ids,
                                                              "PCIDEVICE_INTEL_COM_NET_INFO": info}))
        return pb.AllocateResponse(container_responses=answers)


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_DevicePluginServicer_to_server(Fixed(), server)
    server.add_insecure_port(f"unix:{sys.argv[-1]}")
    server.start()
    if "--metrics" in sys.argv[1:-1]:
        import prometheus_client

        prometheus_client.start_http_server(0, addr="127.0.0.1")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop(0)


if __name__ == "__main__":
    main()
