// Test images of the local cluster's real node: the fake NIM, the pause process and a stand-in
// GPU device plugin (no GPU). Built by scripts/localcluster/images.sh; never part of the collection.
module nimguard.local/testimages

go 1.25.0

require (
	golang.org/x/net v0.47.0
	google.golang.org/grpc v1.72.2
	k8s.io/kubelet v0.35.4
)

require (
	golang.org/x/sys v0.38.0 // indirect
	golang.org/x/text v0.31.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20250528174236-200df99c418a // indirect
	google.golang.org/protobuf v1.36.8 // indirect
)
