// Command gojsonpeer decodes documents with Go's encoding/json into structs shaped like the
// upstream SR-IOV device plugin's config types and sriov-cni's netconf (same field names, json
// tags and Go types, written for this test), so tests/reliability/test_fuzz_gojson.py can check
// sriovkit's decoder against the real thing. stdin: one request per line, "<kind> <base64 doc>";
// stdout: one JSON answer per line.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type deviceSelectors struct {
	Vendors []string `json:"vendors,omitempty"`
	Devices []string `json:"devices,omitempty"`
	Drivers []string `json:"drivers,omitempty"`
}

type pciSelectors struct {
	PciAddresses []string `json:"pciAddresses,omitempty"`
}

type netSelectors struct {
	PfNames      []string `json:"pfNames,omitempty"`
	RootDevices  []string `json:"rootDevices,omitempty"`
	LinkTypes    []string `json:"linkTypes,omitempty"`
	IsRdma       bool
	AcpiIndexes  []string `json:"acpiIndexes,omitempty"`
	NeedVhostNet bool     `json:"needVhostNet,omitempty"`
}

type netDeviceSelectors struct {
	deviceSelectors
	pciSelectors
	netSelectors
	DDPProfiles []string `json:"ddpProfiles,omitempty"`
	VdpaType    string   `json:"vdpaType,omitempty"`
	PKeys       []string `json:"pKeys,omitempty"`
}

type accelSelectors struct {
	deviceSelectors
	pciSelectors
}

type auxSelectors struct {
	deviceSelectors
	netSelectors
	AuxTypes []string `json:"auxTypes,omitempty"`
}

type resourceConfig struct {
	ResourcePrefix  string                       `json:"resourcePrefix,omitempty"`
	ResourceName    string                       `json:"resourceName"`
	DeviceType      string                       `json:"deviceType,omitempty"`
	ExcludeTopology bool                         `json:"excludeTopology,omitempty"`
	Selectors       *json.RawMessage             `json:"selectors,omitempty"`
	AdditionalInfo  map[string]map[string]string `json:"additionalInfo,omitempty"`
	SelectorObjs    []interface{}
}

type configList struct {
	ResourceList []resourceConfig `json:"resourceList"`
}

// the answer for one resource: its fields, and its selectors as upstream's parseObjectOrSlice reads them
type resourceAnswer struct {
	ResourcePrefix  string                       `json:"resourcePrefix"`
	ResourceName    string                       `json:"resourceName"`
	DeviceType      string                       `json:"deviceType"`
	ExcludeTopology bool                         `json:"excludeTopology"`
	AdditionalInfo  map[string]map[string]string `json:"additionalInfo"`
	Selectors       interface{}                  `json:"selectors"` // a list, or "absent" / "skipped" / "badtype"
}

func objectOrSlice[O any](raw []byte) interface{} {
	slice := make([]*O, 1)
	if err := json.Unmarshal(raw, &slice[0]); err != nil {
		if err = json.Unmarshal(raw, &slice); err != nil || len(slice) == 0 {
			return "skipped"
		}
	}
	out := make([]interface{}, len(slice))
	for i, s := range slice {
		if s == nil {
			out[i] = nil
		} else {
			out[i] = flatten(s)
		}
	}
	return out
}

// flatten: a selector struct as one flat object of every field (embedded ones promoted), zero values included
func flatten(v interface{}) map[string]interface{} {
	b, _ := json.Marshal(v)
	m := map[string]interface{}{}
	_ = json.Unmarshal(b, &m)
	return m
}

func config(doc []byte) map[string]interface{} {
	var list configList
	if err := json.Unmarshal(doc, &list); err != nil {
		return map[string]interface{}{"ok": false}
	}
	answers := []resourceAnswer{}
	for _, rc := range list.ResourceList {
		a := resourceAnswer{rc.ResourcePrefix, rc.ResourceName, rc.DeviceType, rc.ExcludeTopology, rc.AdditionalInfo, nil}
		switch {
		case rc.Selectors == nil:
			a.Selectors = "absent"
		case rc.DeviceType == "" || rc.DeviceType == "netDevice":
			a.Selectors = objectOrSlice[netDeviceSelectors](*rc.Selectors)
		case rc.DeviceType == "accelerator":
			a.Selectors = objectOrSlice[accelSelectors](*rc.Selectors)
		case rc.DeviceType == "auxNetDevice":
			a.Selectors = objectOrSlice[auxSelectors](*rc.Selectors)
		default:
			a.Selectors = "badtype"
		}
		answers = append(answers, a)
	}
	return map[string]interface{}{"ok": true, "resources": answers}
}

// containernetworking/cni types.NetConf (v1.3) and sriov-cni's SriovNetConf, as far as a NAD reaches them
type ipam struct {
	Type string `json:"type,omitempty"`
}

type dns struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Domain      string   `json:"domain,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

type gcAttachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

type vfState struct {
	HostIFName   string
	SpoofChk     bool
	Trust        bool
	AdminMAC     string
	EffectiveMAC string
	Vlan         int
	VlanQoS      int
	VlanProto    int
	MinTxRate    int
	MaxTxRate    int
	LinkState    uint32
	MTU          int
}

type netConf struct {
	CNIVersion       string                 `json:"cniVersion,omitempty"`
	Name             string                 `json:"name,omitempty"`
	Type             string                 `json:"type,omitempty"`
	Capabilities     map[string]bool        `json:"capabilities,omitempty"`
	IPAM             ipam                   `json:"ipam,omitempty"`
	DNS              dns                    `json:"dns,omitempty"`
	RawPrevResult    map[string]interface{} `json:"prevResult,omitempty"`
	ValidAttachments []gcAttachment         `json:"cni.dev/valid-attachments,omitempty"`
	OrigVfState      vfState
	Master           string
	MAC              string
	MTU              *int
	Vlan             *int    `json:"vlan"`
	VlanQoS          *int    `json:"vlanQoS"`
	VlanProto        *string `json:"vlanProto"`
	DeviceID         string  `json:"deviceID"`
	VFID             int
	MinTxRate        *int   `json:"min_tx_rate"`
	MaxTxRate        *int   `json:"max_tx_rate"`
	SpoofChk         string `json:"spoofchk,omitempty"`
	Trust            string `json:"trust,omitempty"`
	LinkState        string `json:"link_state,omitempty"`
	RuntimeConfig    struct {
		Mac string `json:"mac,omitempty"`
	} `json:"runtimeConfig,omitempty"`
	LogLevel string `json:"logLevel,omitempty"`
	LogFile  string `json:"logFile,omitempty"`
}

func netconf(doc []byte) map[string]interface{} {
	var n netConf
	if err := json.Unmarshal(doc, &n); err != nil {
		return map[string]interface{}{"ok": false}
	}
	return map[string]interface{}{"ok": true, "conf": map[string]interface{}{
		"cniVersion": n.CNIVersion, "name": n.Name, "type": n.Type, "ipamType": n.IPAM.Type, "mac": n.MAC,
		"mtu": n.MTU, "vlan": n.Vlan, "vlanQoS": n.VlanQoS, "vlanProto": n.VlanProto, "deviceID": n.DeviceID,
		"min_tx_rate": n.MinTxRate, "max_tx_rate": n.MaxTxRate, "spoofchk": n.SpoofChk, "trust": n.Trust,
		"link_state": n.LinkState, "runtimeMac": n.RuntimeConfig.Mac, "logLevel": n.LogLevel, "logFile": n.LogFile,
		"nameservers": n.DNS.Nameservers, "attachments": n.ValidAttachments,
	}}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		kind, encoded, _ := strings.Cut(in.Text(), " ")
		doc, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad request:", err)
			os.Exit(2)
		}
		var answer map[string]interface{}
		if kind == "config" {
			answer = config(doc)
		} else {
			answer = netconf(doc)
		}
		b, _ := json.Marshal(answer)
		out.Write(b)
		out.WriteString("\n")
		out.Flush() // one answer per request: the caller waits for it
	}
}
