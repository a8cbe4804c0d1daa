package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// podStore is what Allocate needs from the API server.
type podStore interface {
	// PendingPods are the Pending pods bound to this node.
	PendingPods(ctx context.Context) ([]corev1.Pod, error)
	// Annotate merges annotations into pod (only if it still has pod's UID).
	Annotate(ctx context.Context, pod *corev1.Pod, annotations map[string]string) error
	// NodeIP is this node's InternalIP.
	NodeIP(ctx context.Context) (string, error)
}

// plugin serves the kubelet's DevicePlugin API for one whole-chip Ascend resource.
type plugin struct {
	v1beta1.UnimplementedDevicePluginServer
	resource    string
	chip        string
	devices     []string
	pods        podStore
	opts        annotationOptions
	findTimeout time.Duration
	retryEvery  time.Duration
	log         *slog.Logger
	mu          sync.Mutex // one Allocate at a time: two must not pick the same pod
}

func newPlugin(resource string, count int, pods podStore, opts annotationOptions, findTimeout time.Duration,
	log *slog.Logger) (*plugin, error) {
	chip, err := chipName(resource)
	if err != nil {
		return nil, err
	}
	if count < 1 || count > maxDevices {
		return nil, fmt.Errorf("--devices %d: advertise 1 to %d chips", count, maxDevices)
	}
	return &plugin{resource: resource, chip: chip, devices: deviceNames(chip, count), pods: pods, opts: opts,
		findTimeout: findTimeout, retryEvery: 250 * time.Millisecond, log: log}, nil
}

func (p *plugin) GetDevicePluginOptions(context.Context, *v1beta1.Empty) (*v1beta1.DevicePluginOptions, error) {
	return &v1beta1.DevicePluginOptions{}, nil
}

// ListAndWatch reports every chip healthy once and keeps the stream open until the kubelet (or a
// restart of this server) closes it; the chips never change.
func (p *plugin) ListAndWatch(_ *v1beta1.Empty, stream v1beta1.DevicePlugin_ListAndWatchServer) error {
	resp := &v1beta1.ListAndWatchResponse{}
	for _, name := range p.devices {
		resp.Devices = append(resp.Devices, &v1beta1.Device{ID: name, Health: v1beta1.Healthy})
	}
	if err := stream.Send(resp); err != nil {
		return err
	}
	p.log.Info("ListAndWatch: advertised", "resource", p.resource, "devices", len(p.devices))
	<-stream.Context().Done()
	return nil
}

func (p *plugin) GetPreferredAllocation(context.Context, *v1beta1.PreferredAllocationRequest) (
	*v1beta1.PreferredAllocationResponse, error) {
	return &v1beta1.PreferredAllocationResponse{}, nil
}

func (p *plugin) PreStartContainer(context.Context, *v1beta1.PreStartContainerRequest) (
	*v1beta1.PreStartContainerResponse, error) {
	return &v1beta1.PreStartContainerResponse{}, nil
}

// Allocate answers with the container environment and, before answering, writes the device
// annotations on the pod the request is for (see podselect.go), so they exist when the container starts.
func (p *plugin) Allocate(ctx context.Context, req *v1beta1.AllocateRequest) (*v1beta1.AllocateResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	resp := &v1beta1.AllocateResponse{}
	for _, creq := range req.ContainerRequests {
		phys, err := p.checkIDs(creq.DevicesIds)
		if err != nil {
			p.log.Error("Allocate refused", "ids", creq.DevicesIds, "err", err)
			return nil, err
		}
		pod, err := p.annotateOwner(ctx, creq.DevicesIds, phys)
		if err != nil {
			p.log.Error("Allocate failed", "ids", creq.DevicesIds, "err", err)
			return nil, err
		}
		env := containerEnv(phys)
		p.log.Info("Allocate", "pod", pod.Namespace+"/"+pod.Name, "ids", creq.DevicesIds,
			envVisibleDevices, env[envVisibleDevices])
		resp.ContainerResponses = append(resp.ContainerResponses, &v1beta1.ContainerAllocateResponse{Envs: env})
	}
	return resp, nil
}

func (p *plugin) checkIDs(ids []string) ([]int, error) {
	phys, err := physicalIDs(p.chip, ids)
	if err != nil {
		return nil, err
	}
	for _, ph := range phys {
		if ph >= len(p.devices) {
			return nil, fmt.Errorf("device %s-%d is not one of the %d this plugin advertises", p.chip, ph, len(p.devices))
		}
	}
	return phys, nil
}

// annotateOwner finds the pod a request is for and writes its annotations, retrying until findTimeout
// (the pod may not be listed yet; ascend-device-plugin retries the same way).
func (p *plugin) annotateOwner(ctx context.Context, ids []string, phys []int) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, p.findTimeout)
	defer cancel()
	var last error
	for {
		pod, err := p.tryAnnotate(ctx, ids, phys)
		if err == nil {
			return pod, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no pod to allocate %v to after %s: %w", ids, p.findTimeout, last)
		case <-time.After(p.retryEvery):
		}
	}
}

var errNoCandidate = errors.New("no candidate pod")

func (p *plugin) tryAnnotate(ctx context.Context, ids []string, phys []int) (*corev1.Pod, error) {
	pods, err := p.pods.PendingPods(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing this node's Pending pods: %w", err)
	}
	found := candidates(pods, corev1.ResourceName(p.resource), len(ids))
	if len(found) == 0 {
		return nil, fmt.Errorf("%w: none of this node's %d Pending pod(s) asks for %d %s without a device annotation",
			errNoCandidate, len(pods), len(ids), p.resource)
	}
	pod := found[0]
	nodeIP, err := p.pods.NodeIP(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the node's InternalIP: %w", err)
	}
	ann, err := podAnnotations(allocation{Chip: p.chip, Phys: phys, PodName: pod.Name, PodUID: string(pod.UID),
		NodeIP: nodeIP}, ids, p.opts)
	if err != nil {
		return nil, err
	}
	if err := p.pods.Annotate(ctx, pod, ann); err != nil {
		return nil, fmt.Errorf("annotating pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return pod, nil
}
