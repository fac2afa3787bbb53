"""The first process inside a bubblewrap sandbox (runs in the sandbox with ``python3 -I -S``).

Standard library only. It makes itself non-dumpable (so the submission, running as the same uid,
cannot ptrace it or open its file descriptors), runs the submission as its child with the status
pipe closed, enforces the wall-clock limit, kills whatever the submission left behind, and then
writes to the status pipe: a 128-byte JSON header (exit code, timed out) followed by a tar stream of
``/output``. The host trusts none of it beyond the header's shape: the tar is validated like
Docker's, and the host has its own wall-clock kill.
"""

import ctypes
import json
import os
import signal
import sys
import tarfile
import time

PR_SET_DUMPABLE = 4
HEADER_BYTES = 128


class _Deadline(Exception):
    pass


def _alarm(_signum: int, _frame: object) -> None:
    raise _Deadline


def main(argv: list[str]) -> int:
    fd = int(argv[argv.index("--status-fd") + 1])
    limit = float(argv[argv.index("--time-limit") + 1])
    command = argv[argv.index("--") + 1 :]
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    started = time.monotonic()
    child = os.fork()
    if child == 0:
        try:
            os.close(fd)
            os.setpgid(0, 0)
            os.execvp(command[0], command)  # noqa: S606 -- the submission, by design
        finally:
            os._exit(127)
    timed_out = False
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        _, status = os.waitpid(child, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        code = os.waitstatus_to_exitcode(status)
    except _Deadline:
        timed_out = True
        code = -signal.SIGKILL
    elapsed = time.monotonic() - started
    # Everything else in this pid namespace that runs as the sandbox user: leftovers, daemons.
    for _ in range(3):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            break
        time.sleep(0.01)
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                break
        except ChildProcessError:
            break
    header = json.dumps({"exit": code, "timed_out": timed_out, "elapsed": round(elapsed, 3)})
    with os.fdopen(fd, "wb") as out:
        out.write(header.encode().ljust(HEADER_BYTES - 1) + b"\n")
        out.flush()
        try:
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive:
                archive.add("/output", arcname="output", recursive=True)
        except (OSError, tarfile.TarError) as exc:
            sys.stderr.write(f"[sandbox init] could not pack /output: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
