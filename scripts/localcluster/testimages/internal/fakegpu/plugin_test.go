package fakegpu

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// fakeKubelet is the kubelet's registration service on DIR/kubelet.sock.
type fakeKubelet struct {
	pluginapi.UnimplementedRegistrationServer
	got chan *pluginapi.RegisterRequest
	srv *grpc.Server
}

func (k *fakeKubelet) Register(_ context.Context, r *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	k.got <- r
	return &pluginapi.Empty{}, nil
}

func startKubelet(t *testing.T, dir string) *fakeKubelet {
	t.Helper()
	path := filepath.Join(dir, "kubelet.sock")
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKubelet{got: make(chan *pluginapi.RegisterRequest, 4), srv: grpc.NewServer()}
	pluginapi.RegisterRegistrationServer(k.srv, k)
	go func() { _ = k.srv.Serve(ln) }()
	return k
}

func waitRegister(t *testing.T, k *fakeKubelet) *pluginapi.RegisterRequest {
	t.Helper()
	select {
	case r := <-k.got:
		return r
	case <-time.After(20 * time.Second): // a bound on a hang, not a performance check
		t.Fatal("the plugin did not register")
		return nil
	}
}

func TestRegistersServesAndReRegisters(t *testing.T) {
	dir, err := os.MkdirTemp("", "fgp") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	k := startKubelet(t, dir)
	p := &Plugin{Dir: dir, Socket: "fake.sock", Resource: "nvidia.com/gpu", Devices: 3, Poll: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	r := waitRegister(t, k)
	if r.Version != pluginapi.Version || r.Endpoint != "fake.sock" || r.ResourceName != "nvidia.com/gpu" {
		t.Fatalf("register request %+v", r)
	}

	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "fake.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	client := pluginapi.NewDevicePluginClient(conn)
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	stream, err := client.ListAndWatch(sctx, &pluginapi.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	list, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Devices) != 3 || list.Devices[2].ID != "fake-gpu-2" || list.Devices[0].Health != pluginapi.Healthy {
		t.Fatalf("devices %v", list.Devices)
	}
	scancel()
	alloc, err := client.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{
		{DevicesIds: []string{"fake-gpu-0", "fake-gpu-2"}}}})
	if err != nil {
		t.Fatal(err)
	}
	env := alloc.ContainerResponses[0].Envs
	if env["NVIDIA_VISIBLE_DEVICES"] != "fake-gpu-0,fake-gpu-2" || env["NIMGUARD_FAKE_GPU"] != "1" ||
		len(alloc.ContainerResponses[0].Devices) != 0 {
		t.Fatalf("allocation %+v", alloc.ContainerResponses[0])
	}
	conn.Close()

	// A kubelet restart: a new kubelet.sock, and the plugin sockets deleted.
	k.srv.Stop()
	_ = os.Remove(filepath.Join(dir, "fake.sock"))
	k2 := startKubelet(t, dir)
	if r := waitRegister(t, k2); r.Endpoint != "fake.sock" {
		t.Fatalf("re-register request %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "fake.sock")); err != nil {
		t.Fatalf("the plugin socket was not served again: %v", err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "fake.sock")); !os.IsNotExist(err) {
		t.Fatalf("the plugin socket is left behind: %v", err)
	}
	k2.srv.Stop()
}
