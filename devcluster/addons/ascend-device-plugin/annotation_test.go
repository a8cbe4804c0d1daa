package main

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
)

var podUID = "1b6c0f9e-0d7e-4a51-9f8e-3f0e7c1d2a44"

func alloc47() allocation {
	return allocation{Chip: "Ascend910", Phys: []int{4, 5, 6, 7}, PodName: "job-worker-0", PodUID: podUID,
		NodeIP: "10.88.0.1"}
}

func options(format annotationFormat, superDeviceID string) annotationOptions {
	return annotationOptions{Format: format, DeviceIPBase: netip.MustParseAddr("192.168.100.100"),
		SuperDeviceID: superDeviceID}
}

// The expected strings are written out from the documented format, field by field in the order of
// MindCluster's component/ascend-device-plugin/pkg/common/proto.go (Instance: pod_name, server_id, host_ip,
// super_pod_id, devices, rack_id, server_index, server_ip; Device: device_id, device_ip, super_device_id
// omitempty) as GetPodConfiguration fills it (server_id from the caller, super_pod_id -2 = SuperPodIdAbnormal
// off a super-pod, rack_id/server_index/server_ip left zero), not produced by the code under test.
func TestCurrentInstanceForDevices4To7(t *testing.T) {
	want := `{"pod_name":"job-worker-0","server_id":"` + podUID + `","host_ip":"10.88.0.1","super_pod_id":-2,` +
		`"devices":[{"device_id":"4","device_ip":"192.168.100.104","super_device_id":"0"},` +
		`{"device_id":"5","device_ip":"192.168.100.105","super_device_id":"0"},` +
		`{"device_id":"6","device_ip":"192.168.100.106","super_device_id":"0"},` +
		`{"device_id":"7","device_ip":"192.168.100.107","super_device_id":"0"}],` +
		`"rack_id":0,"server_index":"","server_ip":""}`
	got, err := instanceJSON(alloc47(), options(formatCurrent, "0"))
	if err != nil || got != want {
		t.Fatalf("instanceJSON =\n%s, %v\nwant\n%s", got, err, want)
	}
}

func TestCurrentInstanceWithoutSuperDeviceID(t *testing.T) {
	got, err := instanceJSON(alloc47(), options(formatCurrent, ""))
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Devices []map[string]string `json:"devices"`
	}
	if err := json.Unmarshal([]byte(got), &parsed); err != nil {
		t.Fatal(err)
	}
	for _, d := range parsed.Devices {
		if _, ok := d["super_device_id"]; ok || len(d) != 2 {
			t.Fatalf("device %v: want only device_id and device_ip", d)
		}
	}
}

func TestLegacyInstanceForDevices4To7(t *testing.T) {
	// The standalone Ascend/ascend-device-plugin (src/plugin/pkg/npu/huawei/plugin_api.go Instance):
	// pod_name, server_id (the node IP), devices[device_id, device_ip].
	want := `{"pod_name":"job-worker-0","server_id":"10.88.0.1","devices":[` +
		`{"device_id":"4","device_ip":"192.168.100.104"},{"device_id":"5","device_ip":"192.168.100.105"},` +
		`{"device_id":"6","device_ip":"192.168.100.106"},{"device_id":"7","device_ip":"192.168.100.107"}]}`
	got, err := instanceJSON(alloc47(), options(formatLegacy, "0"))
	if err != nil || got != want {
		t.Fatalf("instanceJSON =\n%s, %v\nwant\n%s", got, err, want)
	}
}

func TestPodAnnotationKeys(t *testing.T) {
	kubelet := []string{"Ascend910-6", "Ascend910-4", "Ascend910-5", "Ascend910-7"}
	got, err := podAnnotations(alloc47(), kubelet, options(formatCurrent, "0"))
	if err != nil {
		t.Fatal(err)
	}
	conf, _ := instanceJSON(alloc47(), options(formatCurrent, "0"))
	want := map[string]string{
		"huawei.com/kltDev":     "Ascend910-6,Ascend910-4,Ascend910-5,Ascend910-7",
		"huawei.com/AscendReal": "Ascend910-4,Ascend910-5,Ascend910-6,Ascend910-7",
		"ascend.kubectl.kubernetes.io/ascend-910-configuration": conf,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("podAnnotations = %v", got)
	}
	// Only Ascend910 gets the configuration (AddPodAnnotation: tool.name == Ascend910).
	a := alloc47()
	a.Chip = "Ascend310"
	got, err = podAnnotations(a, []string{"Ascend310-4"}, options(formatCurrent, "0"))
	if err != nil || len(got) != 2 || got[annotation910Configuration] != "" {
		t.Fatalf("Ascend310 annotations = %v, %v", got, err)
	}
}

func TestDeviceIP(t *testing.T) {
	base := netip.MustParseAddr("10.0.0.250")
	if ip, err := deviceIP(base, 7); err != nil || ip != "10.0.1.1" {
		t.Fatalf("deviceIP(10.0.0.250, 7) = %q, %v", ip, err)
	}
	if _, err := deviceIP(netip.MustParseAddr("255.255.255.255"), 1); err == nil {
		t.Fatal("overflow accepted")
	}
	if _, err := deviceIP(netip.MustParseAddr("fd00::1"), 1); err == nil {
		t.Fatal("IPv6 base accepted")
	}
}

func TestParseAnnotationFormat(t *testing.T) {
	for _, ok := range []string{"current", "legacy"} {
		if _, err := parseAnnotationFormat(ok); err != nil {
			t.Error(err)
		}
	}
	if _, err := parseAnnotationFormat("v2"); err == nil {
		t.Error("v2 accepted")
	}
}
