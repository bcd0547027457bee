//go:build tools

// Package tools pins the binaries built from this wrapper module.
package tools

import _ "github.com/cert-manager/cert-manager/cmd/controller"
