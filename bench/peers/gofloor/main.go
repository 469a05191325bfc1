// The floor of a Go device plugin: grpc-go serving the kubelet's DevicePlugin API (the generated
// package of k8s.io/kubelet at the version in go.mod, as upstream's plugin uses) and answering
// Allocate with the same envs the agent gives one `intel.com/net` VF, built from the request.
//
//	gofloor SOCKET
//
// bench/deviceplugin.py measures it with the same Python Allocate client as the agent and the
// bare Python grpc server: what a Go plugin's Allocate costs with this client in this run, the
// stand-in for upstream's while upstream cannot be built here. Serves until SIGTERM.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	dp "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type fixed struct {
	dp.UnimplementedDevicePluginServer
}

func (fixed) GetDevicePluginOptions(context.Context, *dp.Empty) (*dp.DevicePluginOptions, error) {
	return &dp.DevicePluginOptions{}, nil
}

func (fixed) Allocate(_ context.Context, req *dp.AllocateRequest) (*dp.AllocateResponse, error) {
	resp := &dp.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		info := make([]string, 0, len(c.DevicesIds))
		for _, id := range c.DevicesIds {
			info = append(info, fmt.Sprintf(`"%s":{"generic":{"deviceID":"%s"}}`, id, id))
		}
		resp.ContainerResponses = append(resp.ContainerResponses, &dp.ContainerAllocateResponse{
			Envs: map[string]string{
				"PCIDEVICE_INTEL_COM_NET":      strings.Join(c.DevicesIds, ","),
				"PCIDEVICE_INTEL_COM_NET_INFO": "{" + strings.Join(info, ",") + "}",
			},
		})
	}
	return resp, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gofloor SOCKET")
		os.Exit(2)
	}
	lis, err := net.Listen("unix", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	server := grpc.NewServer()
	dp.RegisterDevicePluginServer(server, fixed{})
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-stop; server.Stop() }()
	if err := server.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
