package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestChipName(t *testing.T) {
	if chip, err := chipName("huawei.com/Ascend910"); err != nil || chip != "Ascend910" {
		t.Fatalf("chipName(huawei.com/Ascend910) = %q, %v", chip, err)
	}
	for _, bad := range []string{"nvidia.com/gpu", "huawei.com/", "huawei.com/Ascend910-2c", "Ascend910"} {
		if _, err := chipName(bad); err == nil {
			t.Errorf("chipName(%q) accepted", bad)
		}
	}
}

func TestDeviceNamesFollowTheRealPlugin(t *testing.T) {
	// ascend-device-plugin names a chip "<chip>-<physical id>" (device/ascendcommon.go assemblePhyDevices).
	want := []string{"Ascend910-0", "Ascend910-1", "Ascend910-2", "Ascend910-3", "Ascend910-4", "Ascend910-5",
		"Ascend910-6", "Ascend910-7"}
	if got := deviceNames("Ascend910", 8); !reflect.DeepEqual(got, want) {
		t.Fatalf("deviceNames = %v", got)
	}
}

func TestPhysicalIDsSortsTheKubeletsIDs(t *testing.T) {
	got, err := physicalIDs("Ascend910", []string{"Ascend910-6", "Ascend910-4", "Ascend910-7", "Ascend910-5"})
	if err != nil || !reflect.DeepEqual(got, []int{4, 5, 6, 7}) {
		t.Fatalf("physicalIDs = %v, %v", got, err)
	}
	if env := containerEnv(got); env[envVisibleDevices] != "4,5,6,7" || env[envRuntimeOptions] != "" || len(env) != 2 {
		t.Fatalf("containerEnv = %v", env)
	}
}

func TestPhysicalIDsRejects(t *testing.T) {
	for name, ids := range map[string][]string{
		"empty":        {},
		"other chip":   {"Ascend310-1"},
		"no number":    {"Ascend910-x"},
		"negative":     {"Ascend910--1"},
		"leading zero": {"Ascend910-04"},
		"virtual":      {"Ascend910-2c-100-0"},
		"duplicate":    {"Ascend910-1", "Ascend910-1"},
		"too long":     {"Ascend910-" + strings.Repeat("1", 80)},
	} {
		if got, err := physicalIDs("Ascend910", ids); err == nil {
			t.Errorf("%s: physicalIDs(%v) = %v, want an error", name, ids, got)
		}
	}
}
