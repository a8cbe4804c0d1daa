package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
)

// kubePods is podStore on the API server (client-go, a kubeconfig). It needs list pods, patch pods
// and (without --node-ip) get nodes.
type kubePods struct {
	core   corev1client.CoreV1Interface
	node   string
	mu     sync.Mutex
	nodeIP string // --node-ip, or the node's InternalIP once read
}

func newKubePods(kubeconfig, node, nodeIP string) (*kubePods, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.UserAgent = "ascend-test-device-plugin"
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &kubePods{core: core, node: node, nodeIP: nodeIP}, nil
}

func (k *kubePods) PendingPods(ctx context.Context) ([]corev1.Pod, error) {
	sel := fields.AndSelectors(fields.OneTermEqualSelector("spec.nodeName", k.node),
		fields.OneTermEqualSelector("status.phase", string(corev1.PodPending)))
	list, err := k.core.Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// Annotate sends a JSON merge patch that also carries the pod's UID: the API server refuses it if a
// pod of the same name but another UID took the old one's place.
func (k *kubePods) Annotate(ctx context.Context, pod *corev1.Pod, annotations map[string]string) error {
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": pod.UID, "annotations": annotations},
	})
	if err != nil {
		return err
	}
	_, err = k.core.Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, body, metav1.PatchOptions{})
	return err
}

func (k *kubePods) NodeIP(ctx context.Context) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.nodeIP != "" {
		return k.nodeIP, nil
	}
	node, err := k.core.Nodes().Get(ctx, k.node, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && a.Address != "" {
			k.nodeIP = a.Address
			return k.nodeIP, nil
		}
	}
	return "", fmt.Errorf("node %s has no InternalIP address; pass --node-ip", k.node)
}
