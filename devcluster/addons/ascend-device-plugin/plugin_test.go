package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// memPods is podStore on a slice: what Allocate asks of the API server, without one.
type memPods struct {
	mu        sync.Mutex
	pods      []corev1.Pod
	appear    int // PendingPods calls before pods are listed (a pod the API has not shown yet)
	calls     int
	annotated map[string]map[string]string
}

func (m *memPods) PendingPods(context.Context) ([]corev1.Pod, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.calls <= m.appear {
		return nil, nil
	}
	return append([]corev1.Pod(nil), m.pods...), nil
}

func (m *memPods) Annotate(_ context.Context, pod *corev1.Pod, ann map[string]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.pods {
		if m.pods[i].UID == pod.UID {
			if m.pods[i].Annotations == nil {
				m.pods[i].Annotations = map[string]string{}
			}
			for k, v := range ann {
				m.pods[i].Annotations[k] = v
			}
			if m.annotated == nil {
				m.annotated = map[string]map[string]string{}
			}
			m.annotated[pod.Name] = ann
			return nil
		}
	}
	return fmt.Errorf("pod %s is gone", pod.Name)
}

func (m *memPods) NodeIP(context.Context) (string, error) { return "10.88.0.1", nil }

func testPlugin(t *testing.T, store podStore) *plugin {
	t.Helper()
	p, err := newPlugin("huawei.com/Ascend910", 8, store, annotationOptions{Format: formatCurrent,
		DeviceIPBase: netip.MustParseAddr("192.168.100.100"), SuperDeviceID: "0"}, 2*time.Second,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	p.retryEvery = 10 * time.Millisecond
	return p
}

func allocate(p *plugin, ids ...string) (*v1beta1.AllocateResponse, error) {
	return p.Allocate(context.Background(), &v1beta1.AllocateRequest{
		ContainerRequests: []*v1beta1.ContainerAllocateRequest{{DevicesIds: ids}}})
}

func TestAllocateAnnotatesTheOldestWaitingPodAndSetsTheEnv(t *testing.T) {
	store := &memPods{appear: 2, pods: []corev1.Pod{npuPod("b", 4, 2*time.Second, nil), npuPod("a", 4, time.Second, nil)}}
	p := testPlugin(t, store)
	resp, err := allocate(p, "Ascend910-7", "Ascend910-5", "Ascend910-4", "Ascend910-6")
	if err != nil {
		t.Fatal(err)
	}
	if env := resp.ContainerResponses[0].Envs; env[envVisibleDevices] != "4,5,6,7" {
		t.Fatalf("env = %v", env)
	}
	ann, ok := store.annotated["a"]
	if !ok || len(store.annotated) != 1 {
		t.Fatalf("annotated %v, want only the older pod a", store.annotated)
	}
	var inst struct {
		ServerID string `json:"server_id"`
		PodName  string `json:"pod_name"`
		Devices  []struct {
			DeviceID string `json:"device_id"`
		} `json:"devices"`
	}
	if err := json.Unmarshal([]byte(ann[annotation910Configuration]), &inst); err != nil {
		t.Fatal(err)
	}
	if inst.ServerID != "uid-a" || inst.PodName != "a" || len(inst.Devices) != 4 || inst.Devices[0].DeviceID != "4" {
		t.Fatalf("instance = %+v", inst)
	}
	// The next request goes to the other pod: a now has its annotation.
	if _, err := allocate(p, "Ascend910-0", "Ascend910-1", "Ascend910-2", "Ascend910-3"); err != nil {
		t.Fatal(err)
	}
	if _, ok := store.annotated["b"]; !ok {
		t.Fatalf("second Allocate did not annotate b: %v", store.annotated)
	}
}

func TestAllocateFailsWithoutAPod(t *testing.T) {
	store := &memPods{pods: []corev1.Pod{npuPod("two", 2, 0, nil)}}
	p := testPlugin(t, store)
	p.findTimeout = 100 * time.Millisecond
	if _, err := allocate(p, "Ascend910-0"); err == nil {
		t.Fatal("Allocate of 1 chip succeeded with only a 2-chip pod waiting")
	}
	if _, err := allocate(p, "Ascend910-8"); err == nil {
		t.Fatal("Allocate of a device the plugin does not advertise succeeded")
	}
	if len(store.annotated) != 0 {
		t.Fatalf("annotated %v", store.annotated)
	}
}
