"""A Beam SDK worker started before its runner exists: ``python -m
pipelines.job.warm_worker_main DIR K`` (started by :mod:`pipelines.job.warm_workers`).

It binds ``DIR/free-K.sock`` at once, imports Beam's worker (the slow part), then waits for
one client (:mod:`pipelines.job.warm_client`). The client sends one JSON line, the
environment and working directory Beam's runner gave it; this process takes them as its own
and runs Beam's worker main, exactly as ``python -m apache_beam.runners.worker.sdk_worker_main``
would, then sends ``exit CODE`` and ends. Unclaimed, it ends when its stdin (the launcher's
pipe) closes, even after the launcher was killed, removing its socket (and the directory,
when it is the last); claimed, it ends when its client goes away.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import traceback

BEAM_WORKER_ARGV0 = "sdk_worker_main"  # what sys.argv[0] names when Beam starts it
_claimed = threading.Event()
_finished = threading.Event()


def _end_with_launcher(path: str) -> None:
    try:
        while sys.stdin.buffer.read(1 << 16):
            pass
    except (OSError, ValueError):
        pass
    if not _claimed.is_set():  # the launcher ended (or was killed): leave nothing behind
        try:
            os.unlink(path)
            os.rmdir(os.path.dirname(path))  # the last worker out removes the directory
        except OSError:
            pass  # another worker's socket is still there
        os._exit(0)


def _end_with_client(conn: socket.socket) -> None:
    try:
        while conn.recv(1 << 12):
            pass
    except OSError:
        pass
    if not _finished.is_set():
        os._exit(1)  # the client (what Beam's runner started and watches) is gone


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the client closed before sending its environment")
        data += chunk
    return data


def main(argv: list[str]) -> int:
    directory, k = argv[1], argv[2]
    path = os.path.join(directory, f"free-{k}.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    threading.Thread(target=_end_with_launcher, args=(path,), daemon=True).start()
    try:
        from apache_beam.runners.worker import sdk_worker_main  # the ~2 s this process is for

        conn, _ = server.accept()
    except KeyboardInterrupt:  # Ctrl-C reaches the launcher's whole group: end quietly
        os._exit(130)
    _claimed.set()
    server.close()
    request = json.loads(_read_line(conn))
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    threading.Thread(target=_end_with_client, args=(conn,), daemon=True).start()
    code = 0
    try:
        sdk_worker_main.main([BEAM_WORKER_ARGV0])
    except BaseException:  # noqa: BLE001 - reported as the worker's exit code, as Beam's would
        traceback.print_exc()
        code = 1
    _finished.set()
    try:
        conn.sendall(f"exit {code}\n".encode())
    except OSError:
        pass
    return code


if __name__ == "__main__":
    from pipelines.console.process_exit import exit_process

    exit_process(main(sys.argv))
