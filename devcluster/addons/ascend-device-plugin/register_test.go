package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// registrationServer stands in for the kubelet's Registration service on <dir>/kubelet.sock.
type registrationServer struct {
	v1beta1.UnimplementedRegistrationServer
	got chan *v1beta1.RegisterRequest
}

func (s *registrationServer) Register(_ context.Context, r *v1beta1.RegisterRequest) (*v1beta1.Empty, error) {
	s.got <- r
	return &v1beta1.Empty{}, nil
}

// startKubelet serves Registration on dir/kubelet.sock after deleting the directory's sockets, as a
// starting kubelet does.
func startKubelet(t *testing.T, dir string, got chan *v1beta1.RegisterRequest) *grpc.Server {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.Remove(filepath.Join(dir, e.Name()))
	}
	lis, err := net.Listen("unix", filepath.Join(dir, "kubelet.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	v1beta1.RegisterRegistrationServer(srv, &registrationServer{got: got})
	go func() { _ = srv.Serve(lis) }()
	return srv
}

func waitRegister(t *testing.T, got chan *v1beta1.RegisterRequest) *v1beta1.RegisterRequest {
	t.Helper()
	select {
	case r := <-got:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin did not register within 10 s")
		return nil
	}
}

func listDevices(t *testing.T, socket string) []*v1beta1.Device {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := v1beta1.NewDevicePluginClient(conn).ListAndWatch(ctx, &v1beta1.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return resp.Devices
}

func TestRegistersAndRegistersAgainWhenTheKubeletRestarts(t *testing.T) {
	dir, err := os.MkdirTemp("", "dp") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := testPlugin(t, &memPods{})
	r := &registrar{dir: dir, socketName: "ascend-test.sock", resource: "huawei.com/Ascend910", server: p,
		poll: 50 * time.Millisecond, log: log}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.run(ctx) }() // started before the kubelet: it waits for kubelet.sock

	got := make(chan *v1beta1.RegisterRequest, 4)
	time.Sleep(150 * time.Millisecond)
	kubelet := startKubelet(t, dir, got)
	req := waitRegister(t, got)
	if req.Version != v1beta1.Version || req.Endpoint != "ascend-test.sock" || req.ResourceName != "huawei.com/Ascend910" {
		t.Fatalf("RegisterRequest = %+v", req)
	}
	devices := listDevices(t, filepath.Join(dir, "ascend-test.sock"))
	if len(devices) != 8 || devices[4].ID != "Ascend910-4" || devices[4].Health != v1beta1.Healthy {
		t.Fatalf("ListAndWatch = %v", devices)
	}

	kubelet.Stop()
	kubelet = startKubelet(t, dir, got) // removes our socket and recreates kubelet.sock
	defer kubelet.Stop()
	waitRegister(t, got)
	if devices := listDevices(t, filepath.Join(dir, "ascend-test.sock")); len(devices) != 8 {
		t.Fatalf("after the restart ListAndWatch = %v", devices)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ascend-test.sock")); !os.IsNotExist(err) {
		t.Fatalf("the plugin socket is still there after stop: %v", err)
	}
}
