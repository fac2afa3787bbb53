"""Hostile submissions, as the Python programs the tests bake into small images.

Every attack prints what it tried and what stopped it, and follows one convention: it exits 42 when
every attempt was stopped ("contained"), and exits 0 after writing ``/output/breach.csv`` when one
got through, so a breach can never pass for containment.
"""

from __future__ import annotations

CONTAINED = 42

_PRELUDE = """
import os, sys
CONTAINED = 42
breaches = []
def breach(what):
    print("BREACH:", what, flush=True)
    breaches.append(what)
def blocked(what, exc):
    print("blocked:", what, "->", type(exc).__name__, exc, flush=True)
def finish():
    if breaches:
        with open("/output/breach.csv", "w") as f:
            f.write("case_id,score\\n" + "".join(f"b{i},1\\n" for i, _ in enumerate(breaches)))
        sys.exit(0)
    sys.exit(CONTAINED)
"""

NETWORK = (
    _PRELUDE
    + """
import socket
targets = [t for t in os.environ.get("TARGETS", "").split(",") if t]
print("interfaces:", [l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]])
for target in targets:
    host, port = target.rsplit(":", 1)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect((host.strip("[]"), int(port)))
        breach(f"connected to {target}")
    except OSError as exc:
        blocked(f"tcp {target}", exc)
try:
    socket.getaddrinfo("deb.debian.org", 80)
    breach("resolved a name")
except OSError as exc:
    blocked("dns", exc)
finish()
"""
)

SECRETS = (
    _PRELUDE
    + """
secret = os.environ["SECRET"]
for path in os.environ["HOST_PATHS"].split(","):
    try:
        if os.path.isdir(path):
            breach(f"sees host folder {path}: {os.listdir(path)[:5]}")
        else:
            with open(path, "rb") as f:
                data = f.read(4096)
            breach(f"read {path}: {len(data)} bytes")
    except OSError as exc:
        blocked(f"open {path}", exc)
with open("/proc/self/mountinfo") as f:
    mounts = f.read()
tokens = mounts.split()
for path in os.environ["HOST_PATHS"].split(","):
    if any(t == path or t.startswith(path + "/") for t in tokens):
        breach(f"mount table names {path}")
found = 0
tops = ("/input", "/tmp", "/opt", "/reference", "/mnt", "/srv", "/home", "/root", "/run", "/var")
tops += ("/etc",)
for top in tops:
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames:
            try:
                with open(os.path.join(dirpath, name), "rb") as f:
                    if secret.encode() in f.read(1 << 20):
                        breach(f"found the label secret in {dirpath}/{name}")
            except OSError:
                pass
            found += 1
print("files searched:", found)
finish()
"""
)

WRITE_OUTSIDE = (
    _PRELUDE
    + """
for path in ("/evil", "/etc/evil", "/usr/evil", "/usr/local/lib/python3.11/evil.py", "/input/evil",
             "/var/tmp/evil", "/opt/evil", "/home/evil", "/root/evil", "/proc/sys/kernel/hostname"):
    try:
        with open(path, "w") as f:
            f.write("x")
        breach(f"wrote {path}")
    except OSError as exc:
        blocked(f"write {path}", exc)
with open("/tmp/ok", "w") as f:
    f.write("tmp is writable")
with open("/output/ok.csv", "w") as f:
    f.write("case_id,score\\n")
finish()
"""
)

FILL_OUTPUT = """
import os
chunk = b"0" * (1 << 20)
written = 0
try:
    with open("/output/huge.csv", "wb") as f:
        while True:
            f.write(chunk)
            f.flush()
            written += len(chunk)
except OSError as exc:
    print("stopped after", written, "bytes:", exc, flush=True)
"""

FILL_TMP = """
import os, sys
chunk = b"0" * (1 << 20)
written = 0
try:
    with open("/tmp/huge", "wb") as f:
        while True:
            f.write(chunk)
            f.flush()
            written += len(chunk)
except OSError as exc:
    print("TMP_WRITTEN", written, exc, flush=True)
os.unlink("/tmp/huge")
with open("/output/predictions.csv", "w") as f:
    f.write("case_id,score\\nc0,0.5\\n")
"""

FORK_BOMB = (
    _PRELUDE
    + """
import time
count = 0
limit = int(os.environ.get("FORK_GOAL", "100000"))
while count < limit:
    try:
        pid = os.fork()
    except OSError as exc:
        blocked(f"fork number {count + 1}", exc)
        break
    if pid == 0:
        time.sleep(3600)
        os._exit(0)
    count += 1
print("FORKED", count, flush=True)
if count >= limit:
    breach(f"forked {count} processes")
finish()
"""
)

MEMORY_BOMB = """
chunks = []
while True:
    chunks.append(bytearray(b"x" * (64 << 20)))  # written, not just reserved
    print("allocated MiB:", 64 * len(chunks), flush=True)
"""

CPU_SPIN = """
print("spinning", flush=True)
while True:
    pass
"""

SLEEP_FOREVER = """
import time
print("sleeping", flush=True)
time.sleep(10 ** 7)
"""

PRIVILEGES = (
    _PRELUDE
    + """
import ctypes, socket, subprocess
print("uid", os.getuid(), "euid", os.geteuid(), "gid", os.getgid(), "groups", os.getgroups())
if os.geteuid() == 0 or os.getuid() == 0:
    breach("runs as root")
with open("/proc/self/status") as f:
    caps = {l.split(":")[0]: l.split(":")[1].strip() for l in f if l.startswith("Cap")}
print("caps", caps)
if int(caps["CapEff"], 16) or int(caps["CapPrm"], 16):
    breach(f"has capabilities {caps}")
if os.path.exists("/usr/local/bin/suidpy"):
    out = subprocess.run(["/usr/local/bin/suidpy", "-c", "import os; print(os.geteuid())"],
                         capture_output=True, text=True)
    print("setuid python euid:", out.stdout.strip(), out.stderr.strip()[-200:])
    if out.stdout.strip() == "0":
        breach("setuid binary gave euid 0")
    else:
        blocked("setuid binary", OSError("euid stayed " + out.stdout.strip()))
try:
    os.setuid(0)
    breach("setuid(0)")
except OSError as exc:
    blocked("setuid(0)", exc)
libc = ctypes.CDLL(None, use_errno=True)
if libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None) == 0:
    breach("mount tmpfs")
else:
    blocked("mount", OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno())))
if libc.unshare(0x10000000) == 0:  # CLONE_NEWUSER: a way to get capabilities back
    breach("unshare(CLONE_NEWUSER)")
else:
    blocked("unshare user namespace", OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno())))
for kind, proto in ((socket.SOCK_RAW, socket.IPPROTO_ICMP), (socket.SOCK_RAW, socket.IPPROTO_RAW)):
    try:
        socket.socket(socket.AF_INET, kind, proto).close()
        breach(f"raw socket {proto}")
    except OSError as exc:
        blocked(f"raw socket {proto}", exc)
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()
    breach("packet socket")
except OSError as exc:
    blocked("packet socket", exc)
finish()
"""
)

FAKE_METRICS = """
import json
with open("/output/predictions.csv", "w") as f:
    f.write("case_id,score\\nc0,0.5\\n")
with open("/output/metrics.json", "w") as f:
    json.dump({"aggregates": {"auroc": 1.0}, "cases": {}}, f)
"""

SYMLINK_OUT = """
import os
os.symlink("/etc/passwd", "/output/predictions.csv")
"""

HONEST_CONTAINER = """
import csv, os
cases = sorted(n.split(".")[0] for n in os.listdir("/input"))
print("uid", os.getuid(), "cases", len(cases), flush=True)
with open("/output/predictions.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["case_id", "score"])
    for i, case in enumerate(cases):
        w.writerow([case, round((i % 2) * 0.8 + 0.1, 3)])
"""
