// Command sriov is the `sriov` CNI executable: it hands each call to the sriovkit node agent
// over its unix socket and relays the answer, like the Python shim (src/sriovkit/shim/client.py)
// it replaces on hosts without Python. Standard library only, built with CGO_ENABLED=0: it needs
// nothing on the host, not even a /dev or /proc.
//
// It answers VERSION itself. When the agent cannot be reached it runs the CNI library
// in-process through the configured interpreter where the host has one with sriovkit, and
// otherwise answers the spec's error 11 ("try again later") naming the socket.
package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

const maxStdin = 4 * 1024 * 1024 // as the agent's: a network config is a few KiB

func main() {
	os.Exit(run(parseSettings(settingsBlock), os.Environ(), os.Stdin, os.Stdout, os.Stderr))
}

func run(s settings, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	conf, err := io.ReadAll(io.LimitReader(stdin, maxStdin+1))
	if err != nil {
		return answer(stdout, errorReply(nil, codeIOFailure, "cannot read the network config on stdin", err.Error()), 1)
	}
	if len(conf) > maxStdin {
		return answer(stdout, errorReply(nil, codeIOFailure,
			fmt.Sprintf("network config on stdin exceeds %d bytes", maxStdin), ""), 1)
	}
	env := cniEnv(environ)
	if env["CNI_COMMAND"] == "VERSION" {
		return answer(stdout, versionReply(conf), 0)
	}
	socket := s.agentSocket
	if v, ok := env["SRIOVKIT_AGENT_SOCKET"]; ok {
		socket = v
	}
	out, code, err := callAgent(socket, env, conf, s.connectTimeout, s.replyTimeout)
	switch err.(type) {
	case nil:
		return answer(stdout, out, int(code))
	case errUnreachable:
		return unreachable(s, socket, err.Error(), environ, env, conf, stdout, stderr)
	case errNotTaken:
		return answer(stdout, errorReply(conf, codeTryAgain, "sriovkit agent not answering at "+socket,
			err.Error()), 1)
	default: // the request may have been acted on: never repeat it elsewhere
		return answer(stdout, errorReply(conf, codeTryAgain,
			"sriovkit agent failed mid-call at "+socket, err.Error()), 1)
	}
}

// unreachable: the in-process fallback where this host can run it, else "try again later".
func unreachable(s settings, socket, reason string, environ []string, env map[string]string, conf []byte,
	stdout, stderr io.Writer) int {
	msg := "sriovkit agent unreachable at " + socket
	if s.fallbackPython == "" {
		return answer(stdout, errorReply(conf, codeTryAgain, msg, reason), 1)
	}
	if why := fallbackUnusable(s.fallbackPython, environ); why != "" {
		return answer(stdout, errorReply(conf, codeTryAgain, msg+" and no in-process fallback on this host",
			reason+"; "+why), 1)
	}
	logLine(s.logFile, stderr, fmt.Sprintf("agent unreachable (%s); running the CNI in-process, slower: "+
		"command=%s container=%.12s", reason, env["CNI_COMMAND"], env["CNI_CONTAINERID"]))
	err := execFallback(s, environ, conf) // returns only on failure
	return answer(stdout, errorReply(conf, codeTryAgain, msg+" and the in-process fallback could not start",
		reason+"; "+err.Error()), 1)
}

func answer(w io.Writer, out []byte, code int) int {
	w.Write(out)
	return code
}

func logLine(path string, stderr io.Writer, message string) {
	line := fmt.Sprintf("%s sriov-shim pid=%d %s\n", time.Now().Format("2006-01-02T15:04:05"), os.Getpid(), message)
	if path != "" {
		if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			_, err = f.WriteString(line)
			f.Close()
			if err == nil {
				return
			}
		}
	}
	io.WriteString(stderr, line)
}
