//go:build tools

// Package tools pins the KWOK programs this module builds (see go.mod).
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
	_ "sigs.k8s.io/kwok/cmd/kwokctl"
)
