"""Run untrusted (model-written) programs: `execute(program) -> ExecResult`.

Isolation, strongest available first (`isolation()` says which one a machine gets):

``namespaces`` (root, `unshare` and cgroups usable: a training box or a container)
    The program runs under `unshare --mount --net --pid --fork --kill-child --mount-proc`:
    no network (an empty network namespace), its own PID namespace (it sees and can
    signal only its own processes; when its first process ends the kernel kills every
    other one, double-forked daemons included), a private mount namespace with fresh
    size-limited tmpfs over /tmp, /var/tmp and /dev/shm (its working directory is
    /tmp/work there; nothing it writes outlives it or is seen outside), and the rest of
    the file system remounted read-only. A trusted bootstrap joins a memory cgroup and a
    pids cgroup (limits that hold for root), sets rlimits (CPU seconds, file size, open
    files, no core dumps), sets no_new_privs and drops to uid/gid 65534 (nobody) before
    it execs the program with an empty environment.
``rlimits`` (the documented fallback: no root, or no namespaces)
    A new session, rlimits (address space, CPU seconds, processes, file size), an empty
    environment and a fresh temporary working directory; no network or file-system
    isolation, so run training in a container or VM when the code is hostile.

Both: a wall-clock limit, bounded captured output (the program is killed when it
writes far past the bound), and every process of the run killed at the end (the
session's process group, then whatever is left in its cgroup).
"""

from __future__ import annotations

import functools
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class ExecResult:
    stdout: str
    stderr: str
    exit_code: int | None  # negative: killed by that signal; None: never started
    timed_out: bool
    seconds: float
    truncated: bool = False  # output went past the bound
    memory_exceeded: bool = False  # the memory cgroup hit its limit
    isolation: str = "rlimits"

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


# --------------------------------------------------------------------------- detection
def _world_executable(path: str) -> bool:
    """Can uid nobody execute `path` (every directory on its real path searchable)?"""
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & 0o001:
            return False
        return all(p.stat().st_mode & 0o001 for p in real.parents)
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def sandbox_python() -> str | None:
    """An interpreter uid nobody can run: R1_SANDBOX_PYTHON, this one, or a system one."""
    for cand in (os.environ.get("R1_SANDBOX_PYTHON"), sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if cand and os.path.exists(cand) and _world_executable(cand):
            return cand
    return None


def _cgroup_dirs() -> dict[str, Path] | None:
    """Writable parents for a memory and a pids cgroup (v1 hierarchies, or v2 unified)."""
    v1 = {c: CGROUP_ROOT / c for c in ("memory", "pids")}
    if all((d / "tasks").exists() and os.access(d, os.W_OK) for d in v1.values()):
        return v1
    if (CGROUP_ROOT / "cgroup.controllers").exists() and os.access(CGROUP_ROOT, os.W_OK):
        ctl = (CGROUP_ROOT / "cgroup.controllers").read_text().split()
        if {"memory", "pids"} <= set(ctl):
            return {"unified": CGROUP_ROOT}
    return None


@functools.lru_cache(maxsize=None)
def isolation() -> str:
    """'namespaces' or 'rlimits' (see the module doc). R1_SANDBOX=rlimits forces the fallback."""
    if os.environ.get("R1_SANDBOX") == "rlimits" or sys.platform != "linux":
        return "rlimits"
    if os.geteuid() != 0 or not shutil.which("unshare") or sandbox_python() is None or _cgroup_dirs() is None:
        return "rlimits"
    probe = subprocess.run(
        ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "true"],
        capture_output=True, timeout=30,
    )
    return "namespaces" if probe.returncode == 0 else "rlimits"


# --------------------------------------------------------------------------- cgroups
class _Cgroup:
    """A memory + pids cgroup for one execution, removed (after killing its tasks) at the end."""

    def __init__(self, memory_mb: int, max_processes: int):
        self.dirs: list[Path] = []
        parents = _cgroup_dirs() or {}
        name = f"r1-sandbox-{uuid.uuid4().hex[:12]}"
        limit = str(memory_mb * 1024 * 1024)
        if "unified" in parents:
            d = parents["unified"] / name
            d.mkdir()
            self.dirs.append(d)
            (d / "memory.max").write_text(limit)
            _try_write(d / "memory.swap.max", "0")
            (d / "pids.max").write_text(str(max_processes))
            self.task_files = [d / "cgroup.procs"]
            self.events = d / "memory.events"
            self.counters: list[Path] = []
        else:
            mem, pids = parents["memory"] / name, parents["pids"] / name
            for d in (mem, pids):
                d.mkdir()
                self.dirs.append(d)
            (mem / "memory.limit_in_bytes").write_text(limit)
            _try_write(mem / "memory.memsw.limit_in_bytes", limit)  # no swapping past the limit
            (pids / "pids.max").write_text(str(max_processes))
            self.task_files = [mem / "tasks", pids / "tasks"]
            self.events = mem / "memory.oom_control"
            self.counters = [mem / "memory.failcnt", mem / "memory.memsw.failcnt"]

    def memory_exceeded(self) -> bool:
        """The limit was hit: a failed charge, or the OOM killer ran inside the group."""
        for f in self.counters:
            try:
                if int(f.read_text().strip() or 0) > 0:
                    return True
            except (OSError, ValueError):
                pass
        try:
            text = self.events.read_text()
        except OSError:
            return False
        return any(line.split()[0] in ("max", "oom_kill") and int(line.split()[1]) > 0
                   for line in text.splitlines() if len(line.split()) == 2)

    def kill_all(self, rounds: int = 100) -> None:
        """SIGKILL every task inside, again and again until none is left (a fork bomb
        can fork between the read and the kill; its pids limit bounds how many)."""
        for _ in range(rounds):
            pids = set()
            for f in self.task_files:
                try:
                    pids.update(int(x) for x in f.read_text().split())
                except OSError:
                    pass
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def destroy(self) -> None:
        self.kill_all()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.01)


def _try_write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError:
        pass


# --------------------------------------------------------------------------- bootstrap
# Runs as root inside the new namespaces, before the untrusted program; trusted code.
_BOOTSTRAP = r"""
import ctypes, json, os, resource, sys
cfg = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
def mount(src, dst, fs, flags, data=None):
    if libc.mount(src and src.encode(), dst.encode(), fs and fs.encode(), flags, data and data.encode()) != 0:
        raise OSError(ctypes.get_errno(), "mount " + dst)
for f in cfg["cgroup_tasks"]:
    with open(f, "w") as fh:
        fh.write(str(os.getpid()))
mount(None, "/", None, MS_REC | MS_PRIVATE)
try:  # the whole tree read-only (best effort: uid nobody cannot write it anyway)
    mount("/", "/", None, MS_BIND | MS_REC)
    mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
except OSError:
    pass
size = "size=%dm,mode=1777" % cfg["disk_mb"]
for d in ("/tmp", "/var/tmp", "/dev/shm"):
    if os.path.isdir(d):
        mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, size)
os.makedirs("/tmp/work")
with open("/tmp/work/main.py", "w") as fh:
    fh.write(cfg["program"])
os.chown("/tmp/work", 65534, 65534)
os.chdir("/tmp/work")
for name, value in cfg["rlimits"].items():
    resource.setrlimit(getattr(resource, name), (value, value))
libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
os.execve(cfg["python"], [cfg["python"], "-I", "-B", "main.py"], cfg["env"])
"""

_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp/work",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}


def _rlimits(timeout_s: float, memory_mb: int | None, max_processes: int | None, disk_mb: int) -> dict[str, int]:
    cpu = int(timeout_s) + 1
    out = {"RLIMIT_CPU": cpu, "RLIMIT_FSIZE": disk_mb * 1024 * 1024, "RLIMIT_NOFILE": 256, "RLIMIT_CORE": 0}
    if memory_mb:
        out["RLIMIT_AS"] = (memory_mb + 256) * 1024 * 1024  # the cgroup is the real limit; AS bounds one process
    if max_processes:
        out["RLIMIT_NPROC"] = max_processes
    return out


# --------------------------------------------------------------------------- execute
def execute(
    program: str,
    *,
    stdin: str = "",
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    max_processes: int = 16,
    max_output_bytes: int = 64 * 1024,
    disk_mb: int = 64,
) -> ExecResult:
    """Run the Python `program` in the sandbox and return what it did. Never raises for
    anything the program does; the calling process is never at its mercy."""
    mode = isolation()
    t0 = time.perf_counter()
    cgroup = None
    workdir = None
    try:
        if mode == "namespaces":
            cgroup = _Cgroup(memory_mb, max_processes)
            cfg = {"program": program, "python": sandbox_python(), "env": _ENV, "disk_mb": disk_mb,
                   "cgroup_tasks": [str(f) for f in cgroup.task_files],
                   "rlimits": _rlimits(timeout_s, memory_mb, max_processes, disk_mb)}
            cmd = ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
                   sys.executable, "-I", "-S", "-c", _BOOTSTRAP, json.dumps(cfg)]
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True, env=_ENV, cwd="/")
        else:
            workdir = tempfile.mkdtemp(prefix="r1-sandbox-")
            Path(workdir, "main.py").write_text(program)
            limits = _rlimits(timeout_s, memory_mb, None if os.geteuid() == 0 else max_processes, disk_mb)

            def limit():  # in the child, before exec
                for name, value in limits.items():
                    resource.setrlimit(getattr(resource, name), (value, value))

            env = dict(_ENV, HOME=workdir)
            proc = subprocess.Popen([sys.executable, "-I", "-B", "main.py"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                    env=env, cwd=workdir, preexec_fn=limit)
        stop = (lambda: cgroup.kill_all(rounds=3)) if cgroup is not None else (lambda: _kill_group(proc))
        out, err, timed_out, truncated = _communicate(proc, stdin.encode(), timeout_s, max_output_bytes, stop)
        if cgroup is not None:  # kill the program's tree first, so that `unshare` reaps it
            cgroup.kill_all()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(proc)
        code = proc.wait()
        exceeded = cgroup.memory_exceeded() if cgroup else False
        return ExecResult(stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"),
                          exit_code=code, timed_out=timed_out, seconds=time.perf_counter() - t0,
                          truncated=truncated, memory_exceeded=exceeded, isolation=mode)
    except OSError as e:  # could not even start (no such interpreter, cgroup busy, ...)
        return ExecResult("", f"sandbox error: {e}", None, False, time.perf_counter() - t0, isolation=mode)
    finally:
        if cgroup is not None:
            cgroup.destroy()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _communicate(proc: subprocess.Popen, data: bytes, timeout_s: float, cap: int, stop):
    """Feed stdin, read stdout/stderr up to `cap` bytes each until exit or the deadline.
    A program that keeps writing past 4x the cap is killed (unbounded output)."""
    deadline = time.monotonic() + timeout_s
    bufs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    seen = {proc.stdout: 0, proc.stderr: 0}
    sel = selectors.DefaultSelector()
    for f in bufs:
        os.set_blocking(f.fileno(), False)
        sel.register(f, selectors.EVENT_READ)
    try:
        if data:
            proc.stdin.write(data[: 16 * 1024 * 1024])
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    timed_out = truncated = False
    open_files = len(bufs)
    while open_files:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        for key, _ in sel.select(timeout=min(left, 0.1)):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                open_files -= 1
                continue
            f = key.fileobj
            seen[f] += len(chunk)
            room = cap - len(bufs[f])
            if room > 0:
                bufs[f] += chunk[:room]
            if seen[f] > cap:
                truncated = True
            if seen[f] > 4 * cap:
                stop()
        if proc.poll() is not None and not sel.select(timeout=0):
            break
    if not timed_out:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    sel.close()
    for f in bufs:
        f.close()
    return bytes(bufs[proc.stdout]), bytes(bufs[proc.stderr]), timed_out, truncated
