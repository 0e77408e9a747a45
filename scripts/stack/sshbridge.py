"""An ssh:// engine as a private local socket: each connection the SDK opens there is
carried by `ssh HOST docker system dial-stdio`, as the docker CLI and compose carry
theirs (so the user's ssh config, keys and known hosts apply the same to all three).

Not docker-py's own shell-out transport: its socket reads block until the whole buffer
fills, which stalls every streamed response (an export of three bytes took 12 s, and a
probe's exec failed on close). Here the SDK speaks plain HTTP over a unix socket, with
keep-alive, and bytes are pumped as they come."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from urllib.parse import urlsplit

from ..errors import UndoitError


def ssh_argv(host_url: str, control: str) -> list[str]:
    """ssh://[user@]host[:port] -> the ssh command that reaches its engine.

    One ssh connection is shared (ControlMaster at the path `control`): the SDK opens a
    connection per distinct URL, and a full ssh handshake for each costs half a second."""
    u = urlsplit(host_url)
    if u.scheme != "ssh" or not u.hostname:
        raise UndoitError(f"not an ssh:// engine address: {host_url}")
    argv = ["ssh", "-T", "-o", "ConnectTimeout=30", "-o", "ControlMaster=auto", "-o", f"ControlPath={control}",
            "-o", "ControlPersist=30"]
    if u.username:
        argv += ["-l", u.username]
    if u.port:
        argv += ["-p", str(u.port)]
    return [*argv, "--", u.hostname, "docker", "system", "dial-stdio"]


class Bridge:
    """A unix socket in a folder only this user can enter, removed at exit."""

    def __init__(self, host_url: str):
        self.folder = tempfile.mkdtemp(prefix="undoit-ssh-")  # mode 0700
        self.path = os.path.join(self.folder, "docker.sock")
        self.argv = ssh_argv(host_url, os.path.join(self.folder, "ctl"))
        self.last_error = ""
        self._procs: set[subprocess.Popen] = set()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(32)
        threading.Thread(target=self._accept, name="undoit-ssh-accept", daemon=True).start()
        atexit.register(self.close)

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def adapter(self, timeout: int):
        """The SDK's unix-socket adapter with one connection pool for every URL. Its own
        keeps a pool per URL, so nearly every call opens a connection, and each one here
        starts a docker CLI on the far side (0.2 s or more)."""
        from docker.transport.unixconn import UnixHTTPAdapter

        class OnePool(UnixHTTPAdapter):
            def get_connection(self, url, proxies=None):
                return super().get_connection("http+docker://localhost", proxies)

        return OnePool(f"http+unix://{self.path}", timeout=timeout)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._carry, args=(conn,), name="undoit-ssh", daemon=True).start()

    def _carry(self, conn: socket.socket) -> None:
        try:
            # its own session: a Ctrl-C at the terminal must not cut the connections the
            # kit's clean-up still needs to bring services back
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as err:
            self.last_error = f"cannot run ssh: {err}"
            conn.close()
            return
        self._procs.add(proc)
        threading.Thread(target=self._errors, args=(proc,), daemon=True).start()
        up = threading.Thread(target=self._upstream, args=(conn, proc), daemon=True)
        up.start()
        try:
            out = proc.stdout.fileno()
            while True:
                data = os.read(out, 1 << 16)  # whatever has come: never waits for a full buffer
                if not data:
                    break
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            up.join(5)
            conn.close()
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
            self._procs.discard(proc)

    @staticmethod
    def _upstream(conn: socket.socket, proc: subprocess.Popen) -> None:
        fd = proc.stdin.fileno()
        try:
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    break
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
        except OSError:
            pass
        finally:
            try:
                proc.stdin.close()  # dial-stdio closes its write side to the engine
            except OSError:
                pass

    def _errors(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            text = line.decode(errors="replace").strip()
            if text:
                self.last_error = text[:200]

    def close(self) -> None:
        try:
            self._server.close()
        except OSError:
            pass
        for proc in list(self._procs):
            if proc.poll() is None:
                proc.terminate()
        if os.path.exists(os.path.join(self.folder, "ctl")):  # the shared connection ends with us
            i = self.argv.index("--")
            subprocess.run([*self.argv[:i], "-O", "exit", self.argv[i + 1]], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=10, check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


_BRIDGES: dict[str, Bridge] = {}


def bridge(host_url: str) -> Bridge:
    """The one bridge of this process to host_url."""
    if host_url not in _BRIDGES:
        _BRIDGES[host_url] = Bridge(host_url)
    return _BRIDGES[host_url]
