package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSettingsBlockIsReadAndUnknownKeysIgnored(t *testing.T) {
	s := parseSettings(settingsMarker + "agent_socket=/a b/c.sock\nfallback_python=/py\nfuture_key=x\n" +
		"connect_timeout=0.5\nreply_timeout=bad\n\x00\x00agent_socket=/after-nul\n")
	if s.agentSocket != "/a b/c.sock" || s.fallbackPython != "/py" || s.connectTimeout != 500*time.Millisecond ||
		s.replyTimeout != 300*time.Second {
		t.Fatalf("parsed %+v", s)
	}
	if d := parseSettings(settingsBlock); d.agentSocket != "/run/sriovkit/cni.sock" || d.fallbackPython != "" {
		t.Fatalf("default block parsed as %+v", d)
	}
}

func TestRequestEncodingMatchesThePythonShim(t *testing.T) {
	env := cniEnv([]string{"PATH=/bin", "CNI_IFNAME=net1", "CNI_COMMAND=ADD", "SRIOVKIT_X=a=b", "CNI_IFNAME=net2"})
	got := encodeRequest(env, []byte("{}"))
	block := "CNI_COMMAND=ADD\x00CNI_IFNAME=net2\x00SRIOVKIT_X=a=b\x00"
	want := append(binary.BigEndian.AppendUint32(nil, uint32(len(block))), block...)
	want = append(binary.BigEndian.AppendUint32(want, 2), "{}"...)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestQuoteIsPythonJSONDumps(t *testing.T) {
	// expected values are what Python's json.dumps prints for the same strings
	for in, want := range map[string]string{"a\"b\\c": `"a\"b\\c"`, "é\n\x01": `"\u00e9\n\u0001"`,
		"😀": `"\ud83d\ude00"`, "\t\r\b\f/": `"\t\r\b\f/"`, "<&>": `"<&>"`} {
		if got := string(quote(in)); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestVersionIsAnsweredWithoutAnAgent(t *testing.T) {
	for stdin, version := range map[string]string{`{"cniVersion":"0.4.0"}`: "0.4.0", `{"CNIVersion":"1.0.0"}`: "1.0.0",
		`{"cniVersion":""}`: latestVersion, `[1]`: latestVersion, ``: latestVersion, `{"cniVersion":3}`: latestVersion} {
		out, code := runWith(t, settings{agentSocket: "/nonexistent/cni.sock"}, stdin, "CNI_COMMAND=VERSION")
		var reply struct {
			CNIVersion        string   `json:"cniVersion"`
			SupportedVersions []string `json:"supportedVersions"`
		}
		if code != 0 || json.Unmarshal(out, &reply) != nil || reply.CNIVersion != version ||
			strings.Join(reply.SupportedVersions, ",") != "0.3.0,0.3.1,0.4.0,1.0.0,1.1.0" {
			t.Errorf("stdin %q: %d %s", stdin, code, out)
		}
	}
}

func TestOversizedStdinIsRefusedWithCode5(t *testing.T) {
	out, code := runWith(t, settings{agentSocket: "/nonexistent"}, strings.Repeat(" ", maxStdin+1), "CNI_COMMAND=ADD")
	if code != 1 || cniError(t, out).Code != codeIOFailure {
		t.Fatalf("%d %s", code, out)
	}
}

// An echo agent over a real unix socket: the shim relays env, stdin, stdout and the exit code.
func TestCallIsRelayed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cni.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		env, stdin := readFrame(conn), readFrame(conn)
		body := append(append(env, '|'), stdin...)
		reply := binary.BigEndian.AppendUint32(nil, uint32(7))
		conn.Write(append(binary.BigEndian.AppendUint32(reply, uint32(len(body))), body...))
	}()
	out, code := runWith(t, settings{agentSocket: path, connectTimeout: 2 * time.Second, replyTimeout: 5 * time.Second},
		`{"x":1}`, "CNI_COMMAND=ADD", "CNI_IFNAME=net1", "HOME=/root")
	if code != 7 || string(out) != "CNI_COMMAND=ADD\x00CNI_IFNAME=net1\x00|{\"x\":1}" {
		t.Fatalf("%d %q", code, out)
	}
}

// Every way an agent can be absent: nothing sent, so error 11 (no fallback configured) naming the socket.
func TestAgentDownAnswersTryAgainNamingTheSocket(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{"missing": filepath.Join(dir, "none", "cni.sock"), "directory": dir,
		"regular file": filepath.Join(dir, "file"), "refusing": filepath.Join(dir, "closed.sock"),
		"path too long": "/" + strings.Repeat("x", 120)}
	os.WriteFile(cases["regular file"], []byte("x"), 0o600)
	bound, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0) // bound, never listening
	if err != nil || syscall.Bind(bound, &syscall.SockaddrUnix{Name: cases["refusing"]}) != nil {
		t.Fatal(err)
	}
	defer syscall.Close(bound)
	for name, path := range cases {
		start := time.Now()
		out, code := runWith(t, settings{agentSocket: path, connectTimeout: time.Second, replyTimeout: time.Second},
			`{"cniVersion":"0.4.0"}`, "CNI_COMMAND=ADD")
		e := cniError(t, out)
		if code != 1 || e.Code != codeTryAgain || e.CNIVersion != "0.4.0" || !strings.Contains(e.Msg, path) {
			t.Errorf("%s: %d %s", name, code, out)
		}
		if time.Since(start) > 10*time.Second {
			t.Errorf("%s: took %v", name, time.Since(start))
		}
	}
}

// A listener that never accepts: the shim gives up after connectTimeout with error 11.
func TestHungAgentIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hung.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil || syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}) != nil || syscall.Listen(fd, 0) != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	for i := 0; i < 3; i++ { // the first fills the backlog, the next block in connect
		out, code := runWith(t, settings{agentSocket: path, connectTimeout: 300 * time.Millisecond,
			replyTimeout: time.Hour}, `{}`, "CNI_COMMAND=DEL")
		if e := cniError(t, out); code != 1 || e.Code != codeTryAgain || !strings.Contains(e.Msg, path) {
			t.Fatalf("call %d: %d %s", i, code, out)
		}
	}
}

func TestFallbackNeedsAnInterpreterThatExists(t *testing.T) {
	out, code := runWith(t, settings{agentSocket: "/nonexistent/cni.sock", fallbackPython: "/nonexistent/python3",
		connectTimeout: time.Second}, `{}`, "CNI_COMMAND=ADD")
	if e := cniError(t, out); code != 1 || e.Code != codeTryAgain || !strings.Contains(e.Details, "/nonexistent/python3") {
		t.Fatalf("%d %s", code, out)
	}
}

type cniErr struct {
	CNIVersion string `json:"cniVersion"`
	Code       int    `json:"code"`
	Msg        string `json:"msg"`
	Details    string `json:"details"`
}

func cniError(t *testing.T, out []byte) cniErr {
	t.Helper()
	var e cniErr
	if err := json.Unmarshal(out, &e); err != nil {
		t.Fatalf("not JSON: %q", out)
	}
	return e
}

func runWith(t *testing.T, s settings, stdin string, environ ...string) ([]byte, int) {
	t.Helper()
	if s.connectTimeout == 0 {
		s.connectTimeout, s.replyTimeout = time.Second, time.Second
	}
	var out, errOut bytes.Buffer
	code := run(s, environ, strings.NewReader(stdin), &out, &errOut)
	return out.Bytes(), code
}

func readFrame(r io.Reader) []byte {
	head := make([]byte, 4)
	io.ReadFull(r, head)
	body := make([]byte, binary.BigEndian.Uint32(head))
	io.ReadFull(r, body)
	return body
}
