package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// registrar keeps the plugin registered with the kubelet: it serves the plugin's socket in the
// device-plugin directory, registers it on <dir>/kubelet.sock, and starts over when the kubelet
// restarts (a restarted kubelet recreates kubelet.sock and deletes the other sockets in the directory).
type registrar struct {
	dir        string // the kubelet's device-plugin directory
	socketName string // this plugin's socket, a file name in dir
	resource   string
	server     v1beta1.DevicePluginServer
	poll       time.Duration
	log        *slog.Logger
}

func (r *registrar) kubeletSocket() string { return filepath.Join(r.dir, "kubelet.sock") }
func (r *registrar) ownSocket() string     { return filepath.Join(r.dir, r.socketName) }

// run serves and registers until ctx ends, then stops the server and removes its socket.
func (r *registrar) run(ctx context.Context) error {
	for {
		kubelet, err := r.waitForKubelet(ctx)
		if err != nil {
			return nil // ctx ended
		}
		srv, err := r.serve()
		if err != nil {
			return err
		}
		if err := r.register(ctx); err != nil {
			r.log.Warn("registration failed; retrying", "kubelet", r.kubeletSocket(), "err", err)
			r.stop(srv)
			if !r.sleep(ctx) {
				return nil
			}
			continue
		}
		r.log.Info("registered with the kubelet", "resource", r.resource, "socket", r.ownSocket())
		if !r.watch(ctx, kubelet) {
			r.stop(srv)
			return nil
		}
		r.log.Info("the kubelet restarted (kubelet.sock recreated or our socket removed); registering again")
		r.stop(srv)
	}
}

func (r *registrar) sleep(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(r.poll):
		return true
	}
}

func (r *registrar) waitForKubelet(ctx context.Context) (fs.FileInfo, error) {
	logged := false
	for {
		info, err := os.Stat(r.kubeletSocket())
		if err == nil && info.Mode()&fs.ModeSocket != 0 {
			return info, nil
		}
		if !logged {
			r.log.Info("waiting for the kubelet's registration socket", "path", r.kubeletSocket())
			logged = true
		}
		if !r.sleep(ctx) {
			return nil, ctx.Err()
		}
	}
}

// watch returns true when the kubelet restarted, false when ctx ended.
func (r *registrar) watch(ctx context.Context, kubelet fs.FileInfo) bool {
	for r.sleep(ctx) {
		now, err := os.Stat(r.kubeletSocket())
		if err != nil || !os.SameFile(kubelet, now) || !now.ModTime().Equal(kubelet.ModTime()) {
			return true
		}
		if _, err := os.Stat(r.ownSocket()); errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

func (r *registrar) serve() (*grpc.Server, error) {
	if err := os.Remove(r.ownSocket()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("removing the stale socket %s: %w", r.ownSocket(), err)
	}
	lis, err := net.Listen("unix", r.ownSocket())
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", r.ownSocket(), err)
	}
	srv := grpc.NewServer()
	v1beta1.RegisterDevicePluginServer(srv, r.server)
	go func() {
		if err := srv.Serve(lis); err != nil {
			r.log.Error("device plugin server stopped", "err", err)
		}
	}()
	return srv, nil
}

func (r *registrar) stop(srv *grpc.Server) {
	srv.Stop()
	if err := os.Remove(r.ownSocket()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.log.Warn("could not remove the plugin socket", "path", r.ownSocket(), "err", err)
	}
}

func (r *registrar) register(ctx context.Context) error {
	conn, err := grpc.NewClient("unix://"+r.kubeletSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = v1beta1.NewRegistrationClient(conn).Register(ctx, &v1beta1.RegisterRequest{
		Version:      v1beta1.Version,
		Endpoint:     r.socketName,
		ResourceName: r.resource,
		Options:      &v1beta1.DevicePluginOptions{},
	})
	return err
}
