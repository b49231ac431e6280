"""Fixtures for the `squish serve` tests: the server runs as a real process on a free loopback port.

SQUISH_BIN names the binary (default .build/release/squish); the default model must be cached (`squish fetch`).
"""
import os
import pathlib
import signal
import subprocess
import threading
import time

import pytest
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = os.environ.get("SQUISH_BIN", str(ROOT / ".build" / "release" / "squish"))
TINY = str(ROOT / "Tests" / "Fixtures" / "tiny-models" / "llama")
API_KEY = "test-key-123"


class Server:
    """`squish serve` on port 0; the chosen port is read from its first stderr line."""

    def __init__(self, args, ready_timeout=120):
        self.log = []
        self.proc = subprocess.Popen([BIN, "serve", "--port", "0"] + args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        self.port = None
        got_port = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.log.append(line)
                if self.port is None and "listening on http://" in line:
                    self.port = int(line.split("listening on http://")[1].split()[0].rsplit(":", 1)[1])
                    got_port.set()
            got_port.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not got_port.wait(ready_timeout) or self.port is None:
            self.stop()
            raise RuntimeError("squish serve did not start:\n" + "".join(self.log[-30:]))
        self.url = "http://127.0.0.1:%d" % self.port
        deadline = time.time() + ready_timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("squish serve exited:\n" + "".join(self.log[-30:]))
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("squish serve did not become ready:\n" + "".join(self.log[-30:]))

    def stop(self, timeout=60):
        """SIGTERM, then the exit status (killed after `timeout` seconds: a failure for the caller)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


@pytest.fixture(scope="session")
def default_server():
    s = Server(["--parallel", "8", "--context", "2048"])
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="session")
def keyed_tiny_server():
    s = Server(["--model", TINY, "--api-key", API_KEY, "--context", "256", "--parallel", "8", "--max-body", str(1 << 20)])
    yield s
    assert s.stop() == 0
