// A kubelet-side peer built from the kubelet's own generated API packages (k8s.io/kubelet at the
// version in go.mod): it does what the kubelet's plugin watcher and DRA manager do with a DRA
// driver's sockets, so the tests check sriovkit's driver against the real wire format.
//
//	kubeletpeer -registration SOCK register
//	kubeletpeer -endpoint SOCK -version v1|v1beta1 prepare|unprepare NS/UID/NAME...
//	kubeletpeer -endpoint SOCK health
//
// Each prints one JSON document on stdout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	drahealth "k8s.io/kubelet/pkg/apis/dra-health/v1alpha1"
	drav1 "k8s.io/kubelet/pkg/apis/dra/v1"
	drav1beta1 "k8s.io/kubelet/pkg/apis/dra/v1beta1"
	registration "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

func dial(path string) *grpc.ClientConn {
	conn, err := grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	return conn
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func emit(v any) {
	if err := json.NewEncoder(os.Stdout).Encode(v); err != nil {
		fail(err)
	}
}

type claimRef struct{ namespace, uid, name string }

func claims(args []string) []claimRef {
	var out []claimRef
	for _, a := range args {
		parts := strings.SplitN(a, "/", 3)
		if len(parts) != 3 {
			fail(fmt.Errorf("claim %q: want NS/UID/NAME", a))
		}
		out = append(out, claimRef{parts[0], parts[1], parts[2]})
	}
	return out
}

func main() {
	reg := flag.String("registration", "", "the driver's registration socket")
	endpoint := flag.String("endpoint", "", "the driver's dra.sock")
	version := flag.String("version", "v1", "DRAPlugin version: v1 or v1beta1")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch flag.Arg(0) {
	case "register":
		conn := dial(*reg)
		client := registration.NewRegistrationClient(conn)
		info, err := client.GetInfo(ctx, &registration.InfoRequest{})
		if err != nil {
			fail(err)
		}
		// the kubelet tells the plugin whether it took it
		if _, err := client.NotifyRegistrationStatus(ctx, &registration.RegistrationStatus{PluginRegistered: true}); err != nil {
			fail(err)
		}
		emit(map[string]any{"type": info.Type, "name": info.Name, "endpoint": info.Endpoint,
			"versions": info.SupportedVersions})
	case "prepare", "unprepare":
		conn := dial(*endpoint)
		refs := claims(flag.Args()[1:])
		if *version == "v1beta1" {
			emit(callV1beta1(ctx, drav1beta1.NewDRAPluginClient(conn), flag.Arg(0), refs))
		} else {
			emit(callV1(ctx, drav1.NewDRAPluginClient(conn), flag.Arg(0), refs))
		}
	case "health":
		conn := dial(*endpoint)
		stream, err := drahealth.NewDRAResourceHealthClient(conn).NodeWatchResources(ctx, &drahealth.NodeWatchResourcesRequest{})
		if err != nil {
			fail(err)
		}
		first, err := stream.Recv()
		if err != nil {
			fail(err)
		}
		out := map[string]string{}
		for _, d := range first.Devices {
			out[d.Device.PoolName+"/"+d.Device.DeviceName] = d.Health.String()
		}
		emit(out)
	default:
		fail(fmt.Errorf("unknown command %q", flag.Arg(0)))
	}
}

type deviceOut struct {
	Requests []string `json:"requests"`
	Pool     string   `json:"pool"`
	Device   string   `json:"device"`
	CDI      []string `json:"cdi"`
}

type claimOut struct {
	Devices []deviceOut `json:"devices"`
	Error   string      `json:"error"`
}

func callV1(ctx context.Context, c drav1.DRAPluginClient, op string, refs []claimRef) map[string]claimOut {
	var req []*drav1.Claim
	for _, r := range refs {
		req = append(req, &drav1.Claim{Namespace: r.namespace, UID: r.uid, Name: r.name})
	}
	out := map[string]claimOut{}
	if op == "prepare" {
		resp, err := c.NodePrepareResources(ctx, &drav1.NodePrepareResourcesRequest{Claims: req})
		if err != nil {
			fail(err)
		}
		for uid, r := range resp.Claims {
			var devices []deviceOut
			for _, d := range r.Devices {
				devices = append(devices, deviceOut{d.RequestNames, d.PoolName, d.DeviceName, d.CDIDeviceIDs})
			}
			out[uid] = claimOut{devices, r.Error}
		}
		return out
	}
	resp, err := c.NodeUnprepareResources(ctx, &drav1.NodeUnprepareResourcesRequest{Claims: req})
	if err != nil {
		fail(err)
	}
	for uid, r := range resp.Claims {
		out[uid] = claimOut{nil, r.Error}
	}
	return out
}

func callV1beta1(ctx context.Context, c drav1beta1.DRAPluginClient, op string, refs []claimRef) map[string]claimOut {
	var req []*drav1beta1.Claim
	for _, r := range refs {
		req = append(req, &drav1beta1.Claim{Namespace: r.namespace, UID: r.uid, Name: r.name})
	}
	out := map[string]claimOut{}
	if op == "prepare" {
		resp, err := c.NodePrepareResources(ctx, &drav1beta1.NodePrepareResourcesRequest{Claims: req})
		if err != nil {
			fail(err)
		}
		for uid, r := range resp.Claims {
			var devices []deviceOut
			for _, d := range r.Devices {
				devices = append(devices, deviceOut{d.RequestNames, d.PoolName, d.DeviceName, d.CDIDeviceIDs})
			}
			out[uid] = claimOut{devices, r.Error}
		}
		return out
	}
	resp, err := c.NodeUnprepareResources(ctx, &drav1beta1.NodeUnprepareResourcesRequest{Claims: req})
	if err != nil {
		fail(err)
	}
	for uid, r := range resp.Claims {
		out[uid] = claimOut{nil, r.Error}
	}
	return out
}
