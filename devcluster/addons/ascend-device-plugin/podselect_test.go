package main

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const res = corev1.ResourceName("huawei.com/Ascend910")

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func npuPod(name string, chips int64, created time.Duration, ann map[string]string) corev1.Pod {
	limits := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	if chips > 0 {
		limits[res] = *resource.NewQuantity(chips, resource.DecimalSI)
	}
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(t0.Add(created)), Annotations: ann},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main",
			Resources: corev1.ResourceRequirements{Limits: limits}}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
}

func names(pods []*corev1.Pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.Name
	}
	return out
}

func TestCandidatesOldestFirstMatchingCountWithoutAnnotation(t *testing.T) {
	deleting := npuPod("deleting", 4, 0, nil)
	now := metav1.NewTime(t0)
	deleting.DeletionTimestamp = &now
	rejectedPod := npuPod("rejected", 4, 0, nil)
	rejectedPod.Status.Reason = "UnexpectedAdmissionError"
	pods := []corev1.Pod{
		npuPod("young", 4, 3*time.Second, nil),
		npuPod("old", 4, time.Second, nil),
		npuPod("two-chips", 2, 0, nil),
		npuPod("cpu-only", 0, 0, nil),
		npuPod("served", 4, 0, map[string]string{annotationRealAlloc: "Ascend910-0,Ascend910-1,Ascend910-2,Ascend910-3"}),
		npuPod("configured", 4, 0, map[string]string{annotation910Configuration: "{}"}),
		deleting, rejectedPod,
	}
	got := names(candidates(pods, res, 4))
	if len(got) != 2 || got[0] != "old" || got[1] != "young" {
		t.Fatalf("candidates = %v, want [old young]", got)
	}
	if got := names(candidates(pods, res, 2)); len(got) != 1 || got[0] != "two-chips" {
		t.Fatalf("candidates for 2 = %v", got)
	}
}

func TestCandidatesPredicateTimeFirst(t *testing.T) {
	// Volcano's ascend plugin writes predicate-time; the real plugin's getOldestPod orders by it and
	// treats a missing one as MaxUint64.
	pods := []corev1.Pod{
		npuPod("no-time-oldest", 1, 0, nil),
		npuPod("late", 1, 2*time.Second, map[string]string{annotationPredicateTime: "200"}),
		npuPod("early", 1, 3*time.Second, map[string]string{annotationPredicateTime: "100"}),
	}
	got := names(candidates(pods, res, 1))
	if len(got) != 3 || got[0] != "early" || got[1] != "late" || got[2] != "no-time-oldest" {
		t.Fatalf("candidates = %v", got)
	}
}

func TestNPURequestSumsContainers(t *testing.T) {
	p := npuPod("p", 2, 0, nil)
	p.Spec.Containers = append(p.Spec.Containers, p.Spec.Containers[0])
	if n := npuRequest(&p, res); n != 4 {
		t.Fatalf("npuRequest = %d, want 4", n)
	}
}
