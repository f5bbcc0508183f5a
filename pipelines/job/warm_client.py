"""What Beam's local runner starts as a worker when gradum started its workers early:
``python -S warm_client.py DIR`` (see :mod:`pipelines.job.warm_workers`). Standard library
only, so it starts in milliseconds.

It claims one waiting worker by renaming its socket ``DIR/free-K.sock`` (atomic: two clients
cannot both win), sends it this process's environment and working directory as one JSON line,
then lasts until the worker sends ``exit CODE`` or goes away, and exits with that code (1 if
the worker went away without one). If no worker is waiting, it becomes Beam's own worker
(``exec python -m apache_beam.runners.worker.sdk_worker_main``), as if never involved.
"""

import json
import os
import socket
import sys


def claim(directory):
    """A connected socket to a waiting worker, or None."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith("free-"))
    except OSError:
        return None
    for name in names:
        taken = os.path.join(directory, f"t{os.getpid()}.sock")  # short: sun_path is 108 bytes
        try:
            os.rename(os.path.join(directory, name), taken)
        except OSError:
            continue  # another client took it
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(taken)
        except OSError:
            conn.close()  # that worker died: try the next one
            continue
        finally:
            try:
                os.unlink(taken)
            except OSError:
                pass
        return conn
    return None


def main(argv):
    conn = claim(argv[1]) if len(argv) > 1 else None
    if conn is None:
        exe = sys.executable
        os.execv(exe, [exe, "-m", "apache_beam.runners.worker.sdk_worker_main"])
    request = {"env": dict(os.environ), "cwd": os.getcwd()}
    conn.sendall(json.dumps(request).encode() + b"\n")
    reply = b""
    while True:
        chunk = conn.recv(1 << 12)
        if not chunk:
            break
        reply += chunk
    for line in reply.decode(errors="replace").splitlines():
        if line.startswith("exit "):
            return int(line.split()[1])
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
