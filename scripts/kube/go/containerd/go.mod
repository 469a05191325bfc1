// Pins for building github.com/containerd/containerd/v2 from the Go module proxy (scripts/kube/build.sh).
module sriovkit.local/kubebuild/containerd

go 1.25.0

require github.com/containerd/containerd/v2 v2.2.9
