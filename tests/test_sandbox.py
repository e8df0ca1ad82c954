"""The code sandbox against hostile programs. CI runs as root, where the namespace +
cgroup isolation is used; each case must end with reward 0 within its limits, leave the
calling process unharmed, nothing running and nothing written outside the sandbox."""

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from r1.sandbox import execute, isolation

NS = pytest.mark.skipif(isolation() != "namespaces",
                        reason="needs root with unshare and cgroups (the namespace sandbox)")


@pytest.fixture(autouse=True)
def nothing_left_running():
    """After every case: no process of the sandbox user is left, zombies included."""
    yield
    if isolation() == "namespaces":
        deadline = time.time() + 2
        while _sandbox_processes() and time.time() < deadline:
            time.sleep(0.05)
        assert not _sandbox_processes()


def _running(marker: str) -> list[str]:
    """Command lines of live processes that contain `marker`."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd:
                found.append(cmd)
    return found


def _sandbox_processes() -> list[str]:
    """Live processes of the sandbox user (namespaces mode runs programs as nobody)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                status = (d / "status").read_text()
            except OSError:
                continue
            uid = next((line.split()[1] for line in status.splitlines() if line.startswith("Uid:")), "")
            if uid == "65534":
                found.append(d.name)
    return found


def _reward(body: str, **kw) -> float:
    """The code reward on `def add(a, b)` whose (hostile) body is `body`: the attack runs
    when the tests call the function, inside the test run."""
    from r1.rewards.code import run_tests

    code = "def add(a, b):\n" + "".join(f"    {line}\n" for line in body.splitlines())
    test = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    return run_tests(code, {"test": test, "entry_point": "add"}, **kw)


def test_a_correct_program_passes_and_output_is_captured():
    r = execute("import sys\nprint('hi')\nprint('err', file=sys.stderr)\nsys.exit(3)")
    assert r.stdout == "hi\n" and r.stderr == "err\n" and r.exit_code == 3 and not r.timed_out
    r = execute("print(input()[::-1])", stdin="abc\n")
    assert r.ok and r.stdout == "cba\n"
    assert _reward("return a + b") == 1.0
    assert _reward("return a - b") == 0.0


def test_exiting_early_with_status_0_does_not_pass():
    assert _reward("import sys\nsys.exit(0)") == 0.0
    assert _reward("import os\nos._exit(0)") == 0.0


def test_infinite_loop_is_stopped_by_the_wall_clock():
    t0 = time.perf_counter()
    r = execute("while True:\n    pass", timeout_s=1.0)
    assert r.timed_out and not r.ok and time.perf_counter() - t0 < 4
    assert _reward("while True:\n    pass", timeout_s=1.0) == 0.0


def test_fork_bomb_is_contained_and_leaves_nothing():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.perf_counter()
    r = execute(bomb, timeout_s=2.0, max_processes=16)
    assert r.timed_out and time.perf_counter() - t0 < 10
    assert _reward(bomb, timeout_s=2.0) == 0.0
    time.sleep(0.2)
    if isolation() == "namespaces":
        assert not _sandbox_processes()
    assert execute("print(1)").ok  # the machine still forks


def test_memory_bomb_fails_inside_its_limit():
    r = execute("x = []\nwhile True:\n    x.append(bytearray(50 * 1024 * 1024))", memory_mb=256, timeout_s=10)
    assert not r.ok and not r.timed_out
    assert _reward("blob = bytearray(8 * 1024 ** 3)", memory_mb=256) == 0.0


@NS
def test_memory_limit_holds_across_processes():
    """Eight children of 100 MB each against a 256 MB cgroup: per-process rlimits would not stop it."""
    prog = ("import os, time\nkids = []\nfor _ in range(8):\n    pid = os.fork()\n    if pid == 0:\n"
            "        b = bytearray(100 * 1024 * 1024)\n        for i in range(0, len(b), 4096):\n"
            "            b[i] = 1\n        time.sleep(3)\n        os._exit(0)\n    kids.append(pid)\n"
            "codes = [os.waitpid(k, 0)[1] for k in kids]\nprint(codes)\n"
            "raise SystemExit(0 if all(c == 0 for c in codes) else 1)\n")
    r = execute(prog, memory_mb=256, timeout_s=15)
    assert not r.ok and r.memory_exceeded


@NS
def test_writing_outside_its_directory_leaves_no_trace(tmp_path):
    name = f"r1-hostile-{uuid.uuid4().hex}"
    targets = [Path("/tmp") / name, tmp_path / name, Path.home() / name, Path.cwd() / name, Path("/var/tmp") / name]
    prog = "paths = %r\nfor p in paths:\n    try:\n        open(p, 'w').write('pwned')\n" \
           "    except OSError as e:\n        print('refused', p, e)\n" % [str(p) for p in targets]
    r = execute(prog)
    assert r.exit_code == 0, r.stderr
    for p in targets:
        assert not p.exists(), p
    assert not any(p.exists() for p in targets)
    # a solution that passes only if its write outside lands: reward 0
    outside = tmp_path / f"{name}-2"
    body = f"open({str(outside)!r}, 'w').write('x')\nreturn a + b"
    assert _reward(body) == 0.0 and not outside.exists()


@NS
def test_cannot_read_the_parents_environment(monkeypatch):
    secret = f"hunter2-{uuid.uuid4().hex}"
    monkeypatch.setenv("R1_TEST_SECRET", secret)
    prog = ("import os, glob\nprint(os.environ)\nfor f in glob.glob('/proc/*/environ'):\n    try:\n"
            "        print(open(f, 'rb').read())\n    except OSError:\n        pass\n")
    r = execute(prog)
    assert r.exit_code == 0 and secret not in r.stdout and secret not in r.stderr
    assert "R1_TEST_SECRET" not in r.stdout
    # passes only if it can read the secret: reward 0
    assert _reward("import os\nreturn a + b if os.environ.get('R1_TEST_SECRET') else None") == 0.0


@NS
def test_no_network():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    prog = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', %d), timeout=2).sendall(b'leak')\n"
            "    print('connected')\nexcept OSError as e:\n    print('blocked', e)\n"
            "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    print('connected')\n"
            "except OSError as e:\n    print('blocked', e)\n" % port)
    r = execute(prog)
    assert "connected" not in r.stdout and r.stdout.count("blocked") == 2, r.stdout + r.stderr
    # passes only if the connection goes through: reward 0
    body = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nreturn a + b"
    assert _reward(body) == 0.0
    with pytest.raises(socket.timeout):
        server.accept()
    server.close()


def test_cannot_kill_its_parent():
    canary = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        prog = (f"import os, signal\nfor pid in (os.getppid(), {os.getpid()}, {canary.pid}, 1):\n"
                "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n"
                "try:\n    os.killpg(0, signal.SIGKILL)\nexcept OSError:\n    pass\n")
        if isolation() == "namespaces":  # kill(-1) kills everything the caller may signal
            prog += "try:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
        assert _reward(prog) == 0.0
        time.sleep(0.2)
        assert canary.poll() is None  # a process of the caller's is alive, and so are we
    finally:
        canary.kill()
        canary.wait()


def test_unbounded_output_is_cut_and_stopped():
    t0 = time.perf_counter()
    r = execute("while True:\n    print('x' * 1000)", max_output_bytes=10_000, timeout_s=20)
    assert r.truncated and len(r.stdout) <= 10_000 and not r.ok
    assert time.perf_counter() - t0 < 10  # killed for its output, long before the wall clock
    assert _reward("import sys\nsys.stdout.write('y' * 10**8)") == 0.0


@NS
def test_long_lived_child_is_killed_at_the_end():
    marker = f"{uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 10**3}"
    prog = ("import os, subprocess\nif os.fork() == 0:\n    os.setsid()\n"
            f"    subprocess.Popen(['sleep', '{marker}'])\n    os._exit(0)\n")
    r = execute(prog)
    time.sleep(0.3)
    assert not _running(f"sleep {marker}")
    assert r.seconds < 5
    body = f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'])\nraise SystemExit(1)"
    assert _reward(body) == 0.0
    time.sleep(0.3)
    assert not _running(f"sleep {marker}")


def test_isolation_is_reported_and_is_what_it_says():
    """The reported isolation is the one the program ran under: in namespaces it is PID 1 of
    its own PID namespace and sees no network device but loopback; under rlimits its
    address space is bounded."""
    probe = ("import os, resource, socket\n"
             "print(os.getpid(), sorted(n for _, n in socket.if_nameindex()), resource.getrlimit(resource.RLIMIT_AS)[0])")
    r = execute(probe)
    assert r.ok and r.isolation in ("namespaces", "rlimits"), r
    pid, rest = r.stdout.split(" ", 1)
    if r.isolation == "namespaces":
        assert pid == "1" and rest.startswith("['lo']"), r.stdout
    else:
        assert not rest.rstrip().endswith(" -1"), r.stdout  # RLIM_INFINITY would print -1
    from r1.sandbox import _cgroup_dirs, sandbox_python

    if os.geteuid() == 0 and shutil.which("unshare") and _cgroup_dirs() and sandbox_python():
        assert r.isolation == "namespaces", "every prerequisite is here: the namespace sandbox must work"


def test_rlimits_fallback_still_bounds_time_and_output(monkeypatch):
    """The documented fallback (no root / no namespaces): wall clock, output bound, rlimits."""
    import r1.sandbox as sb

    monkeypatch.setenv("R1_SANDBOX", "rlimits")
    sb.isolation.cache_clear()
    try:
        assert sb.isolation() == "rlimits"
        r = execute("print(input())", stdin="hello\n")
        assert r.ok and r.stdout == "hello\n" and r.isolation == "rlimits"
        r = execute("while True:\n    pass", timeout_s=1.0)
        assert r.timed_out
        r = execute("while True:\n    print('x' * 1000)", max_output_bytes=5_000, timeout_s=20)
        assert r.truncated and len(r.stdout) <= 5_000
        r = execute("x = bytearray(4 * 1024 ** 3)", memory_mb=256)
        assert not r.ok and "MemoryError" in r.stderr
        r = execute("import os\nprint(sorted(os.environ))")
        assert "R1_SANDBOX" not in r.stdout  # the parent's environment is not passed on
    finally:
        monkeypatch.delenv("R1_SANDBOX")
        sb.isolation.cache_clear()
