// Pins for building gopkg.in/k8snetworkplumbingwg/multus-cni.v4 from the Go module proxy (scripts/kube/build.sh).
module sriovkit.local/kubebuild/multus

go 1.24.0

require gopkg.in/k8snetworkplumbingwg/multus-cni.v4 v4.2.3
