package main

import (
	"fmt"
	"strings"
	"syscall"
)

// The probe: the interpreter runs and finds the CNI library (a start of Python, paid only when
// the agent is down, so that a host without sriovkit gets error 11 instead of a traceback).
const probe = "import sys\ntry:\n import importlib.util as u\n ok = u.find_spec('sriovkit.cni.plugin') is not None\n" +
	"except ImportError:\n ok = False\nsys.exit(0 if ok else 3)\n"

// fallbackUnusable says why the configured interpreter cannot run the CNI here ("" = it can).
func fallbackUnusable(python string, environ []string) string {
	if err := syscall.Access(python, 1 /* X_OK */); err != nil {
		return fmt.Sprintf("fallback interpreter %s: %v", python, err)
	}
	null, err := syscall.Open("/dev/null", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	files := []uintptr{2, 2, 2}
	if err == nil {
		defer syscall.Close(null)
		files = []uintptr{uintptr(null), uintptr(null), 2}
	}
	pid, err := syscall.ForkExec(python, []string{python, "-c", probe}, &syscall.ProcAttr{Env: environ, Files: files})
	if err != nil {
		return fmt.Sprintf("fallback interpreter %s: %v", python, err)
	}
	var status syscall.WaitStatus
	for {
		_, err = syscall.Wait4(pid, &status, 0, nil)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil || !status.Exited() || status.ExitStatus() != 0 {
		return fmt.Sprintf("sriovkit is not importable by %s", python)
	}
	return ""
}

// execFallback replaces this process with `python -m sriovkit.cni.plugin`, the same environment
// and the already-read stdin replayed from an anonymous memory file. The agent's host root, state
// dir, device-info and log directories, written in at install, win over the environment as they
// do in the agent, so both paths act on the same node. Returns only on failure.
func execFallback(s settings, environ []string, conf []byte) error {
	pinned := []struct{ name, value string }{
		{"SRIOVKIT_HOST_ROOT", s.hostRoot}, {"SRIOVKIT_CNI_STATE_DIR", s.stateDir},
		{"SRIOVKIT_CNI_DEVINFO_DIR", s.devinfoDir}, {"SRIOVKIT_CNI_LOG_DIR", s.logDir},
	}
	env := make([]string, 0, len(environ)+len(pinned))
	for _, kv := range environ {
		overridden := false
		for _, p := range pinned {
			if p.value != "" && strings.HasPrefix(kv, p.name+"=") {
				overridden = true
			}
		}
		if !overridden {
			env = append(env, kv)
		}
	}
	for _, p := range pinned {
		if p.value != "" {
			env = append(env, p.name+"="+p.value)
		}
	}
	fd, err := memfdCreate("sriov-cni-stdin")
	if err != nil {
		return fmt.Errorf("memfd_create: %v", err)
	}
	for rest := conf; len(rest) > 0; {
		n, err := syscall.Write(fd, rest)
		if err != nil {
			return fmt.Errorf("writing stdin to a memfd: %v", err)
		}
		rest = rest[n:]
	}
	if _, err := syscall.Seek(fd, 0, 0); err != nil {
		return err
	}
	if err := syscall.Dup3(fd, 0, 0); err != nil {
		return fmt.Errorf("dup3: %v", err)
	}
	syscall.Close(fd)
	return syscall.Exec(s.fallbackPython, []string{s.fallbackPython, "-m", "sriovkit.cni.plugin"}, env)
}

func memfdCreate(name string) (int, error) {
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return -1, err
	}
	fd, _, errno := syscall.Syscall(sysMemfdCreate, uintptr(unsafePointer(p)), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}
