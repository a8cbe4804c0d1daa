package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The pod annotations ascend-device-plugin writes once a pod has chips (component/ascend-device-plugin
// device/ascendcommon.go AddPodAnnotation, common/common.go GetPodConfiguration, common/proto.go
// Instance and Device; the keys are listed in docs/en/scheduling/api/k8s.md "Pod Annotations").
const (
	// annotationKltDev: the devices the kubelet allocated (common.Pod2kl).
	annotationKltDev = resourcePrefix + "kltDev"
	// annotationRealAlloc: the devices actually mounted (common.PodRealAlloc); the same as kltDev
	// without Volcano's ascend scheduler plugin choosing other chips.
	annotationRealAlloc = resourcePrefix + "AscendReal"
	// annotation910Configuration: the JSON Instance the rank table is built from (common.Pod910DeviceKey),
	// written for Ascend910 chips only. vitjob reads it (vitjob/constants.py ASCEND_DEVICE_ANNOTATIONS).
	annotation910Configuration = "ascend.kubectl.kubernetes.io/ascend-910-configuration"
	// annotationPredicateTime: written by Volcano's ascend scheduler plugin; orders candidate pods.
	annotationPredicateTime = "predicate-time"
	// superPodIDAbnormal: common.SuperPodIdAbnormal, the super_pod_id of a node outside any super-pod.
	superPodIDAbnormal = -2
)

// annotationFormat picks which ascend-device-plugin generation's Instance JSON is written.
type annotationFormat string

const (
	// formatCurrent: MindCluster's ascend-device-plugin (common/proto.go Instance: pod_name,
	// server_id = the pod UID, host_ip, super_pod_id, devices[device_id, device_ip, super_device_id],
	// rack_id, server_index, server_ip).
	formatCurrent annotationFormat = "current"
	// formatLegacy: the standalone Ascend/ascend-device-plugin repository (pod_name, server_id = the
	// node IP, devices[device_id, device_ip]).
	formatLegacy annotationFormat = "legacy"
)

func parseAnnotationFormat(s string) (annotationFormat, error) {
	switch f := annotationFormat(s); f {
	case formatCurrent, formatLegacy:
		return f, nil
	}
	return "", fmt.Errorf("--annotation-format %q: use %q or %q", s, formatCurrent, formatLegacy)
}

// instanceDevice is one chip in the Instance JSON; field order as in common/proto.go Device.
type instanceDevice struct {
	DeviceID      string `json:"device_id"`
	DeviceIP      string `json:"device_ip"`
	SuperDeviceID string `json:"super_device_id,omitempty"`
}

// currentInstance is common/proto.go Instance, field for field.
type currentInstance struct {
	PodName     string           `json:"pod_name"`
	ServerID    string           `json:"server_id"`
	HostIP      string           `json:"host_ip"`
	SuperPodID  int32            `json:"super_pod_id"`
	Devices     []instanceDevice `json:"devices"`
	RackID      int32            `json:"rack_id"`
	ServerIndex string           `json:"server_index"`
	ServerIP    string           `json:"server_ip"`
}

// legacyInstance is the standalone repository's Instance (src/plugin/pkg/npu/huawei/plugin_api.go).
type legacyInstance struct {
	PodName  string           `json:"pod_name"`
	ServerID string           `json:"server_id"`
	Devices  []instanceDevice `json:"devices"`
}

// allocation is what the annotation describes: one pod's chips on this node.
type allocation struct {
	Chip    string // Ascend910
	Phys    []int  // sorted physical chip ids
	PodName string
	PodUID  string
	NodeIP  string
}

// annotationOptions are the node facts a real plugin reads from the driver (dcmi) and we take from flags.
type annotationOptions struct {
	Format        annotationFormat
	DeviceIPBase  netip.Addr // chip N's NIC address is DeviceIPBase + N (the real plugin asks the driver)
	SuperDeviceID string     // every chip's super_device_id in the current format; "" leaves it out
}

// deviceIP is the NIC address of physical chip phys: base + phys, IPv4 only.
func deviceIP(base netip.Addr, phys int) (string, error) {
	if !base.Is4() {
		return "", fmt.Errorf("device IP base %s is not an IPv4 address", base)
	}
	b := base.As4()
	n := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
	n += uint64(phys)
	if n > 0xFFFFFFFF {
		return "", fmt.Errorf("device IP base %s + %d overflows IPv4", base, phys)
	}
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}).String(), nil
}

// instanceJSON is the value of ascend-910-configuration for a.
func instanceJSON(a allocation, opt annotationOptions) (string, error) {
	devices := make([]instanceDevice, 0, len(a.Phys))
	for _, p := range a.Phys {
		ip, err := deviceIP(opt.DeviceIPBase, p)
		if err != nil {
			return "", err
		}
		d := instanceDevice{DeviceID: strconv.Itoa(p), DeviceIP: ip}
		if opt.Format == formatCurrent {
			d.SuperDeviceID = opt.SuperDeviceID
		}
		devices = append(devices, d)
	}
	var v any
	switch opt.Format {
	case formatCurrent:
		if a.PodUID == "" {
			return "", fmt.Errorf("pod %s has no UID (the current format's server_id)", a.PodName)
		}
		v = currentInstance{PodName: a.PodName, ServerID: a.PodUID, HostIP: a.NodeIP,
			SuperPodID: superPodIDAbnormal, Devices: devices}
	case formatLegacy:
		if a.NodeIP == "" {
			return "", fmt.Errorf("the legacy format's server_id is the node IP, which is unknown")
		}
		v = legacyInstance{PodName: a.PodName, ServerID: a.NodeIP, Devices: devices}
	default:
		return "", fmt.Errorf("unknown annotation format %q", opt.Format)
	}
	out, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// podAnnotations are the annotations written for a (AddPodAnnotation: kltDev, AscendReal and, for
// Ascend910, the configuration).
func podAnnotations(a allocation, kubeletIDs []string, opt annotationOptions) (map[string]string, error) {
	mounted := make([]string, len(a.Phys))
	for i, p := range a.Phys {
		mounted[i] = fmt.Sprintf("%s-%d", a.Chip, p)
	}
	out := map[string]string{
		annotationKltDev:    strings.Join(kubeletIDs, ","),
		annotationRealAlloc: strings.Join(mounted, ","),
	}
	if a.Chip == chipAscend910 {
		conf, err := instanceJSON(a, opt)
		if err != nil {
			return nil, err
		}
		out[annotation910Configuration] = conf
	}
	return out, nil
}
