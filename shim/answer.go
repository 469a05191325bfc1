package main

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// What the shim answers itself, byte for byte as the Python side does: VERSION as
// sriovkit.cni.plugin.run_cni prints it, errors as sriovkit.shim.client.error_reply does.

// Kept equal to sriovkit.cni.spec.SUPPORTED_VERSIONS and LATEST_VERSION (a Go test compares the
// answers of both).
var supportedVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

const latestVersion = "1.1.0"

// Codes of the CNI spec the shim uses itself.
const (
	codeIOFailure = 5  // stdin too large to be a network config
	codeTryAgain  = 11 // "try again later": the agent is unreachable or failed mid-call
)

// configVersion: the config's cniVersion when it is a non-empty string, else the latest. Keys
// match as Go's encoding/json matches them (exact first, then case-insensitive), as upstream's
// plugins read their config.
func configVersion(stdin []byte) string {
	if !utf8.Valid(stdin) {
		return latestVersion
	}
	var conf struct {
		CNIVersion json.RawMessage `json:"cniVersion"`
	}
	if json.Unmarshal(stdin, &conf) != nil {
		return latestVersion
	}
	var version string
	if json.Unmarshal(conf.CNIVersion, &version) != nil || version == "" {
		return latestVersion
	}
	return version
}

// versionReply as run_cni's: compact separators, a trailing newline.
func versionReply(stdin []byte) []byte {
	out := append([]byte(`{"cniVersion":`), quote(configVersion(stdin))...)
	out = append(out, `,"supportedVersions":[`...)
	for i, v := range supportedVersions {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, quote(v)...)
	}
	return append(out, "]}\n"...)
}

// errorReply as error_reply's (Python json.dumps spacing); exit status 1.
func errorReply(stdin []byte, code int, msg, details string) []byte {
	out := append([]byte(`{"cniVersion": `), quote(configVersion(stdin))...)
	out = append(out, `, "code": `...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(append(out, `, "msg": `...), quote(msg)...)
	if details != "" {
		out = append(append(out, `, "details": `...), quote(details)...)
	}
	return append(out, "}\n"...)
}

// quote encodes s as Python's json.dumps does (ensure_ascii): so both shims print the same bytes.
func quote(s string) []byte {
	const hex = "0123456789abcdef"
	out := []byte{'"'}
	u16 := func(r rune) {
		out = append(out, '\\', 'u', hex[r>>12&15], hex[r>>8&15], hex[r>>4&15], hex[r&15])
	}
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			out = append(out, '\\', byte(r))
		case r == '\n':
			out = append(out, '\\', 'n')
		case r == '\r':
			out = append(out, '\\', 'r')
		case r == '\t':
			out = append(out, '\\', 't')
		case r == '\b':
			out = append(out, '\\', 'b')
		case r == '\f':
			out = append(out, '\\', 'f')
		case r < 0x20:
			u16(r)
		case r < 0x80:
			out = append(out, byte(r))
		case r > 0xffff:
			r -= 0x10000
			u16(0xd800 + r>>10)
			u16(0xdc00 + r&0x3ff)
		default:
			u16(r)
		}
	}
	return append(out, '"')
}
