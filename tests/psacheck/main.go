// Command psacheck evaluates pods with the real Pod Security admission checks
// (k8s.io/pod-security-admission, the library the API server's PodSecurity plugin runs), for
// tests/test_pod_security.py: it reads a JSON list of {"name", "metadata", "spec", "version"} on
// stdin and prints, per name, the forbidden reasons at the baseline and restricted levels of that
// Kubernetes version ("v1.35"), an empty list where the pod is allowed. Unknown fields are an error:
// every field a pod sets must be a core/v1 PodSpec field.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

type pod struct {
	Name     string            `json:"name"`
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     corev1.PodSpec    `json:"spec"`
	Version  string            `json:"version"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "psacheck:", err)
		os.Exit(1)
	}
}

func run() error {
	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()
	var pods []pod
	if err := dec.Decode(&pods); err != nil {
		return fmt.Errorf("reading pods from stdin: %w", err)
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return err
	}
	out := map[string]map[string][]string{}
	for i := range pods {
		p := &pods[i]
		version, err := api.ParseVersion(p.Version)
		if err != nil {
			return fmt.Errorf("pod %s: %w", p.Name, err)
		}
		out[p.Name] = map[string][]string{}
		for _, level := range []api.Level{api.LevelBaseline, api.LevelRestricted} {
			forbidden := []string{}
			for _, result := range evaluator.EvaluatePod(api.LevelVersion{Level: level, Version: version}, &p.Metadata, &p.Spec) {
				if !result.Allowed {
					forbidden = append(forbidden, result.ForbiddenReason+": "+result.ForbiddenDetail)
				}
			}
			out[p.Name][string(level)] = forbidden
		}
	}
	encoded, err := json.Marshal(out)
	if err != nil {
		return err
	}
	fmt.Println(string(encoded))
	return nil
}
