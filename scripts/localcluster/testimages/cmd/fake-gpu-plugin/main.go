// Command fake-gpu-plugin advertises stand-in nvidia.com/gpu devices to a kubelet. It is NO GPU:
// see internal/fakegpu. The local cluster's real node runs it so that a service spec with gpus: 1
// runs for real on a machine without GPUs.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	"nimguard.local/testimages/internal/fakegpu"
)

func main() {
	p := &fakegpu.Plugin{Poll: time.Second}
	flag.StringVar(&p.Dir, "plugin-dir", pluginapi.DevicePluginPath, "the kubelet's device-plugins folder (holds kubelet.sock)")
	flag.StringVar(&p.Socket, "socket", "nimguard-fake-gpu.sock", "this plugin's socket file name in --plugin-dir")
	flag.StringVar(&p.Resource, "resource", "nvidia.com/gpu", "extended resource name to advertise")
	flag.IntVar(&p.Devices, "devices", 2, "number of stand-in devices")
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), "fake-gpu-plugin: a kubelet device plugin for tests. THIS IS NO GPU:\n"+
			"it advertises stand-in devices and an allocation only sets NVIDIA_VISIBLE_DEVICES and\n"+
			"NIMGUARD_FAKE_GPU=1 in the container. Flags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if p.Devices < 1 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := p.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
