"""A full queue: with one sequence and one waiting place, further requests get 429 in OpenAI's error shape before
anything streams; clients that disconnect free their places, and the server goes on serving."""
import http.client
import json
import socket
import threading

from conftest import Server


def test_requests_beyond_the_queue_are_429_and_disconnects_free_the_sequence():
    server = Server(["--parallel", "1", "--max-queue", "1", "--context", "1024"])
    try:
        answers = [None] * 6
        connections = []
        lock = threading.Lock()

        def ask(i):
            # Long replies (ignore_eos): the first request is still generating when the others arrive.
            c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
            with lock:
                connections.append(c)
            try:
                c.request("POST", "/v1/chat/completions", json.dumps({
                    "messages": [{"role": "user", "content": "Tell a long story number %d." % i}], "stream": True,
                    "max_tokens": 900, "ignore_eos": True}), {"Content-Type": "application/json"})
                r = c.getresponse()
                body = r.read() if r.status != 200 else r.read(1)  # a streaming reply: its first bytes
                answers[i] = (r.status, r.getheader("Content-Type"), r.getheader("Retry-After"), body)
            except OSError as e:  # hung up below while waiting (admitted, or queued)
                answers[i] = ("closed", None, None, repr(e))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        # At most two are admitted (the running one at once, the queued one once a sequence is free): the other
        # four are refused while the first one generates.
        refused = []
        for _ in range(480):
            refused = [a for a in answers if a is not None and a[0] != 200]
            if len(refused) >= 4:
                break
            threading.Event().wait(0.25)
        assert len(refused) >= 4, answers
        for status, ctype, retry, body in refused:
            assert status == 429 and ctype.startswith("application/json") and retry == "1", (status, ctype, retry, body)
            error = json.loads(body)["error"]
            assert error["code"] == "queue_full" and error["message"], error
        with lock:
            for c in connections:
                if c.sock is not None:  # the admitted and queued clients hang up
                    c.sock.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(120)
        # Served again once the place in the queue is free (429 until then, as Retry-After says).
        for _ in range(240):
            c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
            c.request("POST", "/v1/chat/completions", json.dumps({
                "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}), {"Content-Type": "application/json"})
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status != 429:
                break
            threading.Event().wait(0.5)
        assert r.status == 200, body
        assert json.loads(body)["usage"]["completion_tokens"] == 4
        # The two long streams were stopped when their clients left, not generated to their 900 tokens.
        metrics = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        metrics.request("GET", "/metrics")
        generated = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.getresponse().read().decode().splitlines()
                        if line.startswith("squish_generated_tokens_total"))
        print("generated tokens in all: %d" % generated)
        assert 4 < generated < 900, generated
    finally:
        assert server.stop() == 0
