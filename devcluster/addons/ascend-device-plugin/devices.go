package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Device names and the container environment, as MindCluster's ascend-device-plugin forms them
// (component/ascend-device-plugin: device/ascendcommon.go assemblePhyDevices names a chip
// "<chip>-<physical id>", e.g. Ascend910-4; common.SetAscendRuntimeEnv sets ASCEND_VISIBLE_DEVICES to
// the physical ids joined by "," and ASCEND_RUNTIME_OPTIONS to "" for whole chips).

const (
	resourcePrefix    = "huawei.com/"
	envVisibleDevices = "ASCEND_VISIBLE_DEVICES"
	envRuntimeOptions = "ASCEND_RUNTIME_OPTIONS"
	chipAscend910     = "Ascend910"
	maxDevices        = 64 // common.MaxDevicesNum in ascend-device-plugin
	maxDeviceNameLen  = 64
)

// chipName is the device-name prefix of a resource: huawei.com/Ascend910 -> Ascend910.
func chipName(resource string) (string, error) {
	chip, ok := strings.CutPrefix(resource, resourcePrefix)
	if !ok || chip == "" || strings.ContainsAny(chip, "/-") {
		return "", fmt.Errorf("resource %q is not a whole-chip Ascend resource (huawei.com/<chip>, e.g. huawei.com/Ascend910)", resource)
	}
	return chip, nil
}

// deviceNames lists the n devices a node advertises: <chip>-0 .. <chip>-(n-1).
func deviceNames(chip string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", chip, i)
	}
	return names
}

// physicalIDs parses the kubelet's device ids (<chip>-<physical id>) into sorted physical ids.
func physicalIDs(chip string, ids []string) ([]int, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("no device ids in the request")
	}
	if len(ids) > maxDevices {
		return nil, fmt.Errorf("%d devices requested, more than %d", len(ids), maxDevices)
	}
	seen := make(map[int]bool, len(ids))
	out := make([]int, 0, len(ids))
	for _, id := range ids {
		if len(id) > maxDeviceNameLen {
			return nil, fmt.Errorf("device id %.20q… is longer than %d characters", id, maxDeviceNameLen)
		}
		num, ok := strings.CutPrefix(id, chip+"-")
		if !ok {
			return nil, fmt.Errorf("device id %q is not a %s device (%s-<physical id>)", id, chip, chip)
		}
		phys, err := strconv.Atoi(num)
		if err != nil || phys < 0 || strconv.Itoa(phys) != num {
			return nil, fmt.Errorf("device id %q: %q is not a physical chip id", id, num)
		}
		if seen[phys] {
			return nil, fmt.Errorf("device id %q appears twice in the request", id)
		}
		seen[phys] = true
		out = append(out, phys)
	}
	sort.Ints(out)
	return out, nil
}

// containerEnv is what Allocate puts into the container for these physical chips.
func containerEnv(phys []int) map[string]string {
	parts := make([]string, len(phys))
	for i, p := range phys {
		parts[i] = strconv.Itoa(p)
	}
	return map[string]string{
		envVisibleDevices: strings.Join(parts, ","),
		envRuntimeOptions: "",
	}
}
