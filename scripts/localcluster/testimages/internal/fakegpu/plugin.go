// Package fakegpu is a kubelet device plugin that advertises stand-in devices under a GPU resource
// name. It is NO GPU: no device is created, opened or checked; an allocation only sets environment
// variables, so a pod asking for nvidia.com/gpu: 1 can be scheduled and run on a GPU-less test
// node. Never deploy it where real GPUs are expected.
package fakegpu

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// Plugin serves the device plugin API on Dir/Socket and registers Resource with the kubelet.
type Plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	Dir      string // the kubelet's device-plugins folder (holds kubelet.sock)
	Socket   string // this plugin's socket file name inside Dir
	Resource string // e.g. nvidia.com/gpu
	Devices  int
	Poll     time.Duration // how often kubelet.sock and our socket are checked
}

// DeviceIDs are the stand-in devices' names.
func (p *Plugin) DeviceIDs() []string {
	ids := make([]string, p.Devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("fake-gpu-%d", i)
	}
	return ids
}

// GetDevicePluginOptions: no pre-start hook, no preferred allocation.
func (p *Plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the (always healthy) devices once and keeps the stream open.
func (p *Plugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	resp := &pluginapi.ListAndWatchResponse{}
	for _, id := range p.DeviceIDs() {
		resp.Devices = append(resp.Devices, &pluginapi.Device{ID: id, Health: pluginapi.Healthy})
	}
	if err := stream.Send(resp); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// Allocate hands the container the variables a GPU plugin would, and a marker saying it is fake.
func (p *Plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": strings.Join(c.DevicesIds, ","), "NIMGUARD_FAKE_GPU": "1"},
		})
	}
	return resp, nil
}

// PreStartContainer is not requested (see GetDevicePluginOptions).
func (p *Plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

// fileID identifies a socket file, so a recreated one (kubelet restart) is noticed.
func fileID(path string) (os.FileInfo, bool) {
	fi, err := os.Stat(path)
	return fi, err == nil
}

// Run serves and registers until ctx ends. The kubelet forgets plugins when it restarts (it
// recreates kubelet.sock and deletes the other sockets in the folder), so when either socket
// changes the plugin serves again and re-registers.
func (p *Plugin) Run(ctx context.Context) error {
	kubelet := filepath.Join(p.Dir, "kubelet.sock")
	for ctx.Err() == nil {
		kfi, ok := fileID(kubelet)
		if !ok {
			if !sleep(ctx, p.Poll) {
				break
			}
			continue
		}
		srv, err := p.serve()
		if err != nil {
			return err
		}
		if err := p.register(ctx, kubelet); err != nil {
			log.Printf("registering with %s: %v (retrying)", kubelet, err)
			srv.Stop()
			if !sleep(ctx, p.Poll) {
				break
			}
			continue
		}
		log.Printf("registered %s (%d stand-in devices, NO GPU) at %s", p.Resource, p.Devices, p.Dir)
		own := filepath.Join(p.Dir, p.Socket)
		for sleep(ctx, p.Poll) {
			nfi, ok := fileID(kubelet)
			if _, mine := fileID(own); !ok || !mine || !os.SameFile(kfi, nfi) || !kfi.ModTime().Equal(nfi.ModTime()) {
				log.Printf("kubelet restarted or our socket vanished: registering again")
				break
			}
		}
		srv.Stop()
	}
	_ = os.Remove(filepath.Join(p.Dir, p.Socket))
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func (p *Plugin) serve() (*grpc.Server, error) {
	path := filepath.Join(p.Dir, p.Socket)
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(srv, p)
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

func (p *Plugin) register(ctx context.Context, kubelet string) error {
	conn, err := grpc.NewClient("unix://"+kubelet, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(rctx, &pluginapi.RegisterRequest{
		Version: pluginapi.Version, Endpoint: p.Socket, ResourceName: p.Resource,
		Options: &pluginapi.DevicePluginOptions{},
	})
	return err
}
