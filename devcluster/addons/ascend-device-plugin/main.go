// Command ascend-test-device-plugin is a device plugin for tests: on the kubelet's device-plugin API
// (k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1) it advertises whole Ascend chips that do not exist
// (huawei.com/Ascend910 x --devices, named Ascend910-0..N-1 as MindCluster's ascend-device-plugin
// names them) and does at Allocate what ascend-device-plugin does for them: ASCEND_VISIBLE_DEVICES /
// ASCEND_RUNTIME_OPTIONS in the container, and the pod annotations (huawei.com/kltDev,
// huawei.com/AscendReal, ascend.kubectl.kubernetes.io/ascend-910-configuration) through the API server.
// No device node is mounted (there is none); chip NIC addresses come from --device-ip-base.
//
// Where it differs from ascend-device-plugin: the real plugin writes the annotations from a periodic
// loop that reads the kubelet's pod-resources API after the allocation; this one writes them inside
// Allocate, before the kubelet starts the container, picking the pod as podselect.go describes.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type config struct {
	dir, socket, resource, kubeconfig, node, nodeIP string
	devices                                         int
	format, deviceIPBase, superDeviceID             string
	findTimeout                                     time.Duration
	// -example-annotation: print the annotations Allocate would write for these kubelet device ids
	// (comma-separated) on pod -example-pod-name / -example-pod-uid, and exit (no kubelet, no API server).
	exampleIDs, examplePod, exampleUID string
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("ascend-test-device-plugin", flag.ContinueOnError)
	fs.StringVar(&c.dir, "device-plugin-dir", "/var/lib/kubelet/device-plugins",
		"the kubelet's device-plugin directory (holds kubelet.sock)")
	fs.StringVar(&c.socket, "socket", "ascend-test.sock", "this plugin's socket: a file name in --device-plugin-dir")
	fs.StringVar(&c.resource, "resource", "huawei.com/Ascend910", "the extended resource advertised")
	fs.IntVar(&c.devices, "devices", 8, "how many chips to advertise (<chip>-0 .. <chip>-N-1)")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig for the API server (list/patch pods, get nodes); required")
	fs.StringVar(&c.node, "node-name", "", "this node's name, as registered by the kubelet; required")
	fs.StringVar(&c.nodeIP, "node-ip", "", "the node IP written as host_ip (default: the node's InternalIP)")
	fs.StringVar(&c.format, "annotation-format", string(formatCurrent),
		"ascend-910-configuration JSON: current (MindCluster: server_id = pod UID) or legacy (server_id = node IP)")
	fs.StringVar(&c.deviceIPBase, "device-ip-base", "192.168.100.100", "chip N's device_ip is this IPv4 address + N")
	fs.StringVar(&c.superDeviceID, "super-device-id", "0",
		"super_device_id of every chip in the current format, as MindCluster writes it; empty leaves the field out")
	fs.DurationVar(&c.findTimeout, "find-pod-timeout", 10*time.Second,
		"how long Allocate looks for the pod a request is for before failing it")
	fs.StringVar(&c.exampleIDs, "example-annotation", "",
		"print the annotations Allocate writes for these device ids (e.g. Ascend910-4,Ascend910-5) and exit")
	fs.StringVar(&c.examplePod, "example-pod-name", "example-pod", "the pod name for -example-annotation")
	fs.StringVar(&c.exampleUID, "example-pod-uid", "00000000-0000-0000-0000-000000000000",
		"the pod UID for -example-annotation")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.exampleIDs != "" {
		return c, nil
	}
	var missing []string
	if c.kubeconfig == "" {
		missing = append(missing, "--kubeconfig")
	}
	if c.node == "" {
		missing = append(missing, "--node-name")
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("%s required", strings.Join(missing, " and "))
	}
	if c.socket == "kubelet.sock" || c.socket != filepath.Base(c.socket) {
		return c, fmt.Errorf("--socket %q must be a plain file name other than kubelet.sock", c.socket)
	}
	return c, nil
}

func run(args []string, log *slog.Logger) error {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}
	format, err := parseAnnotationFormat(c.format)
	if err != nil {
		return err
	}
	base, err := netip.ParseAddr(c.deviceIPBase)
	if err != nil || !base.Is4() {
		return fmt.Errorf("--device-ip-base %q is not an IPv4 address", c.deviceIPBase)
	}
	opts := annotationOptions{Format: format, DeviceIPBase: base, SuperDeviceID: c.superDeviceID}
	if c.exampleIDs != "" {
		return printExample(c, opts, os.Stdout)
	}
	pods, err := newKubePods(c.kubeconfig, c.node, c.nodeIP)
	if err != nil {
		return err
	}
	p, err := newPlugin(c.resource, c.devices, pods, opts, c.findTimeout, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r := &registrar{dir: c.dir, socketName: c.socket, resource: c.resource, server: p, poll: 500 * time.Millisecond, log: log}
	return r.run(ctx)
}

func printExample(c config, opts annotationOptions, w io.Writer) error {
	chip, err := chipName(c.resource)
	if err != nil {
		return err
	}
	ids := strings.Split(c.exampleIDs, ",")
	phys, err := physicalIDs(chip, ids)
	if err != nil {
		return err
	}
	if c.nodeIP == "" {
		return fmt.Errorf("-example-annotation needs --node-ip")
	}
	ann, err := podAnnotations(allocation{Chip: chip, Phys: phys, PodName: c.examplePod, PodUID: c.exampleUID,
		NodeIP: c.nodeIP}, ids, opts)
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(map[string]any{"annotations": ann, "env": containerEnv(phys)}, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(out))
	return err
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(os.Args[1:], log); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "ascend-test-device-plugin:", err)
		os.Exit(2)
	}
}
