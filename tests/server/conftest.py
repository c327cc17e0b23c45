"""Starts real `driftwood serve` processes for the server tests: each on a free port (--listen
127.0.0.1:0; the port is read from the line the server prints), with its own store folder and
a keys file holding two keys. Tests talk to it over real sockets with real clients."""
import os
import re
import signal
import subprocess
import time

import httpx
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("DW_BUILD", "build")
DRIFTWOOD = os.path.join(ROOT, BUILD, "bin", "driftwood")
KEY_A = "sk-test-alice-0123456789abcdef"
KEY_B = "sk-test-bob-fedcba9876543210"


class Server:
    def __init__(self, store, keys_file, extra=()):
        self.store, self.keys_file, self.extra = str(store), keys_file, list(extra)
        self.proc = None
        self.port = None

    def start(self):
        args = [DRIFTWOOD, "serve", "--listen", "127.0.0.1:0", "--store", self.store, *self.extra]
        if self.keys_file:
            args += ["--keys", self.keys_file]
        self.log_path = self.store + ".log"
        self.log = open(self.log_path, "ab")
        start = self.log.tell()  # a restart appends to the same log: read only what this run prints
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.time() + 20
        while time.time() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                m = re.findall(rb"listening on http://127\.0\.0\.1:(\d+)", f.read())
            if m:
                self.port = int(m[-1])
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("server did not start: " + open(self.log_path, errors="replace").read())

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def kill(self):  # SIGKILL: no chance to hibernate or flush anything
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()

    def client(self, key=KEY_A, **kw):
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60, **kw)


@pytest.fixture
def keys_file(tmp_path):
    p = tmp_path / "keys"
    p.write_text(f"# test keys\n{KEY_A} alice\n{KEY_B} bob\n")
    return str(p)


@pytest.fixture
def make_server(tmp_path, keys_file):
    made = []

    def make(*extra, store=None, keys=True):
        s = Server(store or tmp_path / f"store{len(made)}", keys_file if keys else None, extra)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server shared by the tests of a module."""
    d = tmp_path_factory.mktemp("srv")
    keys = d / "keys"
    keys.write_text(f"{KEY_A} alice\n{KEY_B} bob\n")
    s = Server(d / "store", str(keys), ["--max-streams", "4", "--max-body", "65536", "--request-timeout", "2"]).start()
    yield s
    s.stop()
