"""``sparo`` commands without paying the imports each time: a server process imports the
command line once, then forks a child per command, which takes the caller's working folder,
environment and standard streams and runs ``open_clip_sparo.cli.main``. The ``sparo`` on the
caller's ``PATH`` is a small client that passes those over a Unix socket and exits with the
command's status. Used by the docs test, whose blocks run dozens of ``sparo`` commands.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLIENT = """\
import json, os, socket, sys
connection = socket.socket(socket.AF_UNIX)
connection.connect(os.environ["SPARO_SERVER"])
request = json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
socket.send_fds(connection, [len(request).to_bytes(8, "big") + request], [0, 1, 2])
status = connection.recv(16)
sys.exit(int(status) if status else 1)
"""


def serve(address: str) -> None:
    """Answer each connection with a forked child running the command it asks for."""
    from open_clip_sparo import cli

    for module, _ in cli.COMMANDS.values():
        __import__(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped as they end
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(address)
    listener.listen()
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        data, fds, _, _ = socket.recv_fds(connection, 1 << 16, 3)
        size = int.from_bytes(data[:8], "big")
        while len(data) < size + 8:
            data += connection.recv(1 << 16)
        if os.fork() == 0:
            listener.close()
            request = json.loads(data[8:])
            for fd, stream in zip(fds, (0, 1, 2), strict=True):
                os.dup2(fd, stream)
                os.close(fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            sys.argv = ["sparo", *request["argv"]]
            try:
                status = cli.main(request["argv"])
            except SystemExit as exit_:
                status = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
                status = 1
            sys.stdout.flush()
            sys.stderr.flush()
            connection.sendall(str(status).encode())
            os._exit(status)
        for fd in fds:
            os.close(fd)
        connection.close()


@contextmanager
def sparo_server(folder: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A running server (with ``env``) and the environment under which ``sparo`` reaches it."""
    folder.mkdir(parents=True, exist_ok=True)
    address = str(folder / "socket")
    (folder / "client.py").write_text(CLIENT)
    client = folder / "sparo"
    client.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{folder / "client.py"}" "$@"\n')
    client.chmod(0o755)
    code = (
        f"import sys; sys.path[:0] = {sys.path!r}; "
        f"import sparo_server; sparo_server.serve({address!r})"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout.readline().strip() == "ready", "the sparo server did not start"
        yield {"PATH": f"{folder}{os.pathsep}{env['PATH']}", "SPARO_SERVER": address}
    finally:
        server.kill()
        server.wait()
        server.stdout.close()
