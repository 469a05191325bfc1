// Pins for building go.etcd.io/etcd/server/v3 from the Go module proxy (scripts/kube/build.sh).
module sriovkit.local/kubebuild/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 v3.6.16
