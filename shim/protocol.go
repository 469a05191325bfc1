package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The agent's wire format, as src/sriovkit/shim/client.py speaks it: request = u32 length + env
// block ("KEY=VALUE\0" repeated, keys sorted) + u32 length + stdin; reply = i32 exit code + u32
// length + stdout. Big-endian.
const maxFrame = 16 * 1024 * 1024

var envPrefixes = []string{"CNI_", "SRIOVKIT_"}

// errUnreachable: nothing was sent, so running the call elsewhere cannot repeat it.
type errUnreachable struct{ reason string }

func (e errUnreachable) Error() string { return e.reason }

// errNotTaken: sent, but not read by the agent in time; it may still read it later.
type errNotTaken struct{ reason string }

func (e errNotTaken) Error() string { return e.reason }

// cniEnv: the variables the agent gets (the CNI ones and ours); the last of a repeated name wins.
func cniEnv(environ []string) map[string]string {
	env := map[string]string{}
	for _, kv := range environ {
		key, value, _ := strings.Cut(kv, "=")
		for _, p := range envPrefixes {
			if strings.HasPrefix(key, p) {
				env[key] = value
				break
			}
		}
	}
	return env
}

func encodeRequest(env map[string]string, stdin []byte) []byte {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var block []byte
	for _, k := range keys {
		block = append(append(append(append(block, k...), '='), env[k]...), 0)
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(len(block)))
	out = append(out, block...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(stdin)))
	return append(out, stdin...)
}

// callAgent sends one call and returns the agent's (stdout, exit code). Connecting is bounded by
// connectTimeout (a listener that never accepts fills its backlog), the answer by replyTimeout.
func callAgent(path string, env map[string]string, stdin []byte, connectTimeout, replyTimeout time.Duration) ([]byte, int32, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, 0, errUnreachable{fmt.Sprintf("%s: %v", path, err)}
	}
	defer syscall.Close(fd)
	if err := connect(fd, path, time.Now().Add(connectTimeout)); err != nil {
		return nil, 0, errUnreachable{fmt.Sprintf("%s: %s", path, describe(err, connectTimeout))}
	}
	// Until the agent has read the whole request nothing was acted on; one that does not take it
	// within connectTimeout is hung (or saturated): answered like an unreachable one, never by the
	// fallback, since the request still sits in its queue (the agent skips a call whose caller
	// has left, sriovkit.shim.server).
	taken := time.Now().Add(connectTimeout)
	if err := sendAll(fd, encodeRequest(env, stdin), rootRights(), taken); err != nil || !waitTaken(fd, taken) {
		return nil, 0, errNotTaken{fmt.Sprintf("%s: the agent did not take the call within %gs", path,
			connectTimeout.Seconds())}
	}
	deadline := time.Now().Add(replyTimeout)
	head := make([]byte, 8)
	if err := recvExact(fd, head, deadline); err != nil {
		return nil, 0, fmt.Errorf("waiting for %s: %s", path, describe(err, replyTimeout))
	}
	code, length := int32(binary.BigEndian.Uint32(head)), binary.BigEndian.Uint32(head[4:])
	if length > maxFrame {
		return nil, 0, fmt.Errorf("reply of %d bytes from %s exceeds %d", length, path, maxFrame)
	}
	out := make([]byte, length)
	if err := recvExact(fd, out, deadline); err != nil {
		return nil, 0, fmt.Errorf("reading the reply from %s: %s", path, describe(err, replyTimeout))
	}
	return out, code, nil
}

// waitTaken: whether the agent read all we sent before deadline. SIOCOUTQ on a unix socket counts
// what was sent and not yet read by the peer.
func waitTaken(fd int, deadline time.Time) bool {
	for pause := 100 * time.Microsecond; ; pause = min(2*pause, 20*time.Millisecond) {
		var queued int32
		_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TIOCOUTQ, uintptr(unsafePointer32(&queued)))
		if errno != 0 || queued == 0 {
			return true // an ioctl this kernel refuses: wait for the reply as before
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
	}
}

func connect(fd int, path string, deadline time.Time) error {
	if len(path) >= 108 { // sun_path; the kernel would refuse it with a less helpful EINVAL
		return errors.New("socket path longer than 107 bytes")
	}
	for {
		if err := setTimeout(fd, syscall.SO_SNDTIMEO, deadline); err != nil {
			return err
		}
		err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
		if err != syscall.EINTR {
			return err
		}
	}
}

// rootRights: a descriptor of our root directory to send along (SCM_RIGHTS), through which an
// agent whose pod lacks the host's /var/run/netns and /opt/cni/bin reaches the paths we pass it
// (sriovkit.shim.callerroot); nil where "/" cannot be opened. The agent closes what it does not keep.
func rootRights() []byte {
	root, err := syscall.Open("/", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	return syscall.UnixRights(root) // closed when the process exits, right after the call
}

// sendAll sends buf; oob (the root descriptor) goes with the first 4 bytes only.
func sendAll(fd int, buf, oob []byte, deadline time.Time) error {
	for len(buf) > 0 {
		if err := setTimeout(fd, syscall.SO_SNDTIMEO, deadline); err != nil {
			return err
		}
		chunk := buf
		if oob != nil {
			chunk = buf[:4]
		}
		n, err := syscall.SendmsgN(fd, chunk, oob, nil, syscall.MSG_NOSIGNAL)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		buf, oob = buf[n:], nil
	}
	return nil
}

func recvExact(fd int, buf []byte, deadline time.Time) error {
	for len(buf) > 0 {
		if err := setTimeout(fd, syscall.SO_RCVTIMEO, deadline); err != nil {
			return err
		}
		n, err := syscall.Read(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("connection closed by the agent")
		}
		buf = buf[n:]
	}
	return nil
}

// setTimeout arms SO_SNDTIMEO/SO_RCVTIMEO with what is left until deadline (timeouts apply per
// call, so each retry or partial transfer gets only the remainder).
func setTimeout(fd, opt int, deadline time.Time) error {
	left := time.Until(deadline)
	if left <= 0 {
		return syscall.EAGAIN
	}
	tv := syscall.NsecToTimeval(left.Nanoseconds())
	if tv.Sec == 0 && tv.Usec == 0 {
		tv.Usec = 1 // zero would mean "no timeout"
	}
	return syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, opt, &tv)
}

func describe(err error, timeout time.Duration) string {
	if err == syscall.EAGAIN || err == syscall.EINPROGRESS {
		return fmt.Sprintf("no answer within %gs", timeout.Seconds())
	}
	return err.Error()
}
