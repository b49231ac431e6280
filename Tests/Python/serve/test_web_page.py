"""The chat page at / in a real headless Chromium (Debian's `chromium`, driven over the DevTools protocol on a pipe):
it lists the models, sends a message to two models side by side and shows their replies streaming in, with tokens/s.
Skips, saying so, where chromium is not installed (scripts/test.sh installs it). SQUISH_SCREENSHOT names a PNG to
write of the final page."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Browser:
    """Chromium with --remote-debugging-pipe: commands are JSON messages ending in NUL on fd 3, replies on fd 4."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="squish-chromium-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def child_fds():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--remote-debugging-pipe",
             "--user-data-dir=" + self.profile, "--window-size=1280,800", "--no-first-run", "about:blank"],
            pass_fds=(3, 4), preexec_fn=child_fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.next_id = 0
        self.buffer = b""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def call(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                data = os.read(self.from_chrome, 1 << 20)
                if not data:
                    raise RuntimeError("chromium closed the pipe")
                self.buffer += data
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError("%s: %s" % (method, reply["error"]))
                return reply["result"]

    def page(self, method, params=None):
        return self.call(method, params, session=self.session)

    def evaluate(self, expression):
        r = self.page("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium); the web page test needs it")
def test_page_streams_two_models_side_by_side():
    server = Server(["--model", "smollm2-135m", "--model", "gemma3-270m", "--parallel", "4", "--context", "1024"])
    browser = Browser()
    try:
        browser.page("Page.enable")
        browser.page("Page.navigate", {"url": server.url + "/"})
        # Until the page has loaded and filled the model picker from /v1/models (right after Page.navigate the old
        # document may still be the one evaluated).
        deadline = time.time() + 60
        while time.time() < deadline and (browser.evaluate("document.getElementById('model-a')?.options.length") or 0) < 2:
            time.sleep(0.2)
        assert browser.evaluate("[...document.getElementById('model-a').options].map(o => o.value)") == \
            ["smollm2-135m", "gemma3-270m"]
        browser.evaluate("document.getElementById('compare').click()")
        browser.evaluate("document.getElementById('max-tokens').value = '48'")
        browser.evaluate("document.getElementById('temperature').value = '0'")
        browser.evaluate("document.getElementById('prompt').value = 'Write a short poem about the sea.'")
        browser.evaluate("document.getElementById('send').click()")
        seen = {"a": set(), "b": set()}
        deadline = time.time() + 120
        states = {}
        while time.time() < deadline:
            states = browser.evaluate("Object.fromEntries(['a','b'].map(p => { const e = document.getElementById('pane-' + p);"
                                      " return [p, [e.dataset.state, e.dataset.chunks, e.querySelector('.msg.assistant') ?"
                                      " e.querySelector('.msg.assistant').textContent : '']]; }))")
            for p in "ab":
                if states[p][0] == "streaming" and states[p][2]:
                    seen[p].add(states[p][2])
            if all(states[p][0] in ("done", "error") for p in "ab"):
                break
            time.sleep(0.05)
        assert states["a"][0] == "done" and states["b"][0] == "done", states
        for p in "ab":
            # The text grew while the reply was streaming (several partial texts were on screen), then completed.
            assert len(seen[p]) >= 2, (p, seen[p])
            assert int(states[p][1]) >= 5 and len(states[p][2]) > 10, states[p]
            stats = browser.evaluate("document.querySelector('#pane-%s .stats').textContent" % p)
            assert "tok/s" in stats and "first token" in stats, stats
        shot = browser.page("Page.captureScreenshot", {"format": "png"})
        path = os.environ.get("SQUISH_SCREENSHOT")
        if path:
            with open(path, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
    finally:
        browser.close()
        assert server.stop() == 0
