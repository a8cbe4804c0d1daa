package main

import (
	"math"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Which pod an Allocate call is for. The kubelet's Allocate names only device ids, so, like
// ascend-device-plugin (server/plugin.go doWithVolcanoSchedule, common/common.go FilterPods,
// getOldestPod), the plugin looks among this node's pods:
//   - the pod asks for the resource (sum of its containers' limits, common.getNPUResourceNumOfPod) and
//     that count equals the number of devices in the request (checkAnnotationAllocateValid compares
//     the request with the pod's chips the same way);
//   - it is not being deleted and was not rejected at admission (isShouldDeletePod);
//   - it has no device annotation yet (a pod the plugin already served is skipped; the real plugin
//     marks it with predicate-time = MaxUint64 in its cache);
//   - the oldest wins, by Volcano's predicate-time annotation (getOldestPod; absent = MaxUint64).
// Without Volcano's ascend scheduler plugin no pod carries predicate-time, and the real plugin then
// keeps the first pod of its list; this one breaks the tie by creation time, then namespace/name, so
// the choice does not depend on list order.
// The real plugin lists the node's active pods (not Failed/Succeeded); at Allocate the pod being
// admitted is Pending, and the API list here asks for Pending pods only.

// npuRequest is the number of chips of resource the pod's containers ask for (limits).
func npuRequest(pod *corev1.Pod, resource corev1.ResourceName) int64 {
	var total int64
	for _, c := range pod.Spec.Containers {
		if q, ok := c.Resources.Limits[resource]; ok {
			total += q.Value()
		}
	}
	return total
}

func predicateTime(pod *corev1.Pod) uint64 {
	v, ok := pod.Annotations[annotationPredicateTime]
	if !ok {
		return math.MaxUint64
	}
	t, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return math.MaxUint64
	}
	return t
}

func rejected(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp != nil || pod.Status.Reason == "UnexpectedAdmissionError"
}

// candidates are the pods that may be the one a request for count chips of resource is for, best first.
func candidates(pods []corev1.Pod, resource corev1.ResourceName, count int) []*corev1.Pod {
	var out []*corev1.Pod
	for i := range pods {
		pod := &pods[i]
		if rejected(pod) || npuRequest(pod, resource) != int64(count) {
			continue
		}
		if _, done := pod.Annotations[annotationRealAlloc]; done {
			continue
		}
		if _, done := pod.Annotations[annotation910Configuration]; done {
			continue
		}
		out = append(out, pod)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if ta, tb := predicateTime(a), predicateTime(b); ta != tb {
			return ta < tb
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out
}
