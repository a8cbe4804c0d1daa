// Command coredns is CoreDNS v1.14.3 with only the plugins a cluster DNS on the dev cluster's real
// node needs, selected at compile time as CoreDNS documents it (coredns.io, "Compile Time Enabling
// or Disabling Plugins"; the upstream main package is coredns.go + core/plugin/zplugin.go, which
// import every plugin, cloud SDKs included).
//
// The plugins linked are listed in directives below, in the order CoreDNS's own
// core/dnsserver/zdirectives.go gives them, with one deliberate change: template runs right after
// kubernetes (upstream: before hosts). The dev cluster has no upstream resolver, so the
// kubernetes plugin's `fallthrough in-addr.arpa ip6.arpa` hands reverse queries for addresses outside
// the cluster to a template that answers NXDOMAIN; upstream order would let the template answer
// before kubernetes ever sees the query.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/file"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/template"
)

// directives is the plugin chain order (the order in a Corefile does not matter, this does).
var directives = []string{
	"reload",
	"bind",
	"ready",
	"health",
	"errors",
	"log",
	"loadbalance",
	"cache",
	"hosts",
	"kubernetes",
	"template",
	"file",
	"loop",
	"forward",
}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
