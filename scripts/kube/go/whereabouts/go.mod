// Pins for building github.com/k8snetworkplumbingwg/whereabouts from the Go module proxy (scripts/kube/build.sh).
module sriovkit.local/kubebuild/whereabouts

go 1.24.0

require github.com/k8snetworkplumbingwg/whereabouts v0.9.2

// as whereabouts' own go.mod replaces it
replace github.com/gogo/protobuf => github.com/gogo/protobuf v1.3.2
