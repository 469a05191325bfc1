package main

import (
	"strconv"
	"strings"
	"time"
)

// The settings block: `sriovctl install-cni` rewrites these bytes in a copy of the built binary
// (src/sriovkit/shim/install.py), so one file carries its configuration and installing needs no
// compiler. Layout: settingsMarker, "key=value\n" lines, NUL padding, settingsEnd; the installer
// rewrites everything between the two markers and keeps the length. It is a package variable
// initialised from a constant expression: the Go toolchain keeps such a string as data read at
// run time (what `go build -ldflags -X` relies on) and never folds it into the code.
const (
	settingsMarker = "#sriovkit-shim-settings-v1\n"
	settingsEnd    = "#end-sriovkit-shim-settings\n"
	nul64          = "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	nul1k          = nul64 + nul64 + nul64 + nul64 + nul64 + nul64 + nul64 + nul64 + nul64 + nul64 + nul64 + nul64 + nul64 + nul64 + nul64 + nul64
	nul4k          = nul1k + nul1k + nul1k + nul1k
)

var settingsBlock = settingsMarker + "agent_socket=/run/sriovkit/cni.sock\n" + nul4k + settingsEnd

type settings struct {
	agentSocket    string
	fallbackPython string // interpreter with sriovkit installed; "" = no fallback
	logFile        string // "" = stderr
	hostRoot       string // the agent's --host-root, for the fallback
	stateDir       string // the agent's --cni-state-dir, for the fallback
	devinfoDir     string // the agent's --cni-devinfo-dir, for the fallback
	logDir         string // the agent's --cni-log-dir, for the fallback
	connectTimeout time.Duration
	replyTimeout   time.Duration
}

// parseSettings reads the block; unknown keys are ignored so an older binary accepts a newer
// installer's block, and a bad number keeps the default.
func parseSettings(block string) settings {
	s := settings{agentSocket: "/run/sriovkit/cni.sock", connectTimeout: 2 * time.Second,
		replyTimeout: 300 * time.Second}
	if end := strings.IndexByte(block, 0); end >= 0 {
		block = block[:end]
	}
	for _, line := range strings.Split(block, "\n") { // the marker line has no "=": skipped
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch key {
		case "agent_socket":
			s.agentSocket = value
		case "fallback_python":
			s.fallbackPython = value
		case "log_file":
			s.logFile = value
		case "host_root":
			s.hostRoot = value
		case "state_dir":
			s.stateDir = value
		case "devinfo_dir":
			s.devinfoDir = value
		case "log_dir":
			s.logDir = value
		case "connect_timeout":
			s.connectTimeout = seconds(value, s.connectTimeout)
		case "reply_timeout":
			s.replyTimeout = seconds(value, s.replyTimeout)
		}
	}
	return s
}

func seconds(value string, fallback time.Duration) time.Duration {
	f, err := strconv.ParseFloat(value, 64)
	if err != nil || f <= 0 || f > 86400 {
		return fallback
	}
	return time.Duration(f * float64(time.Second))
}
