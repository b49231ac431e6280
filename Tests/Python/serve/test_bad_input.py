"""Bad input gets a clean 4xx in OpenAI's error shape, and the server keeps serving others meanwhile."""
import http.client
import json
import socket
import threading

import pytest

from conftest import API_KEY

AUTH = {"Authorization": "Bearer " + API_KEY, "Content-Type": "application/json"}


def request(server, method, path, body=None, headers=AUTH, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    payload = r.read()
    c.close()
    return r.status, r.getheader("Content-Type"), payload


def error_of(status, content_type, payload):
    assert content_type.startswith("application/json"), (status, payload[:200])
    e = json.loads(payload)["error"]
    assert set(e) == {"message", "type", "param", "code"} and e["message"]
    return e


CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("body,param", [
    ({"messages": "hello"}, "messages"),
    ({"messages": []}, "messages"),
    ({}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": MSG, "max_tokens": "ten"}, "max_tokens"),
    ({"messages": MSG, "max_tokens": -3}, "max_tokens"),
    ({"messages": MSG, "max_tokens": 0}, "max_tokens"),
    ({"messages": MSG, "max_tokens": 1e30}, "max_tokens"),
    ({"messages": MSG, "max_tokens": 2.5}, "max_tokens"),
    ({"messages": MSG, "max_tokens": 100000, "max_completion_tokens": 2}, "max_completion_tokens"),
    ({"messages": MSG, "temperature": "hot"}, "temperature"),
    ({"messages": MSG, "temperature": 7}, "temperature"),
    ({"messages": MSG, "stream": "yes"}, "stream"),
    ({"messages": MSG, "stop": [1, 2]}, "stop"),
    ({"messages": MSG, "n": 3}, "n"),
    ({"messages": MSG, "logprobs": True, "top_logprobs": 30}, "top_logprobs"),
    ({"messages": MSG, "response_format": {"type": "xml"}}, "response_format.type"),
])
def test_wrong_fields_are_400_naming_the_field(keyed_tiny_server, body, param):
    status, ctype, payload = request(keyed_tiny_server, "POST", CHAT, body)
    assert status == 400
    assert error_of(status, ctype, payload)["param"] == param


def test_integers_beyond_64_bits_are_400(keyed_tiny_server):
    status, ctype, payload = request(keyed_tiny_server, "POST", CHAT, {"messages": MSG, "max_tokens": 10 ** 30})
    assert status == 400 and "out of range" in error_of(status, ctype, payload)["message"]


def test_huge_max_tokens_and_long_prompts_exceed_the_context(keyed_tiny_server):
    for body in ({"messages": MSG, "max_tokens": 100000},
                 {"messages": [{"role": "user", "content": "Elizabeth " * 400}]}):
        status, ctype, payload = request(keyed_tiny_server, "POST", CHAT, body)
        assert status == 400 and error_of(status, ctype, payload)["code"] == "context_length_exceeded"
    status, ctype, payload = request(keyed_tiny_server, "POST", "/v1/completions", {"prompt": [5, 100000], "max_tokens": 2})
    assert status == 400


@pytest.mark.parametrize("raw", [b"{", b"not json", b"[1, 2]", b"\xff\xfe", b'{"messages": [' * 200 + b"]" * 200 + b"}", b""])
def test_malformed_json_is_400(keyed_tiny_server, raw):
    status, ctype, payload = request(keyed_tiny_server, "POST", CHAT, raw=raw)
    assert status == 400 and error_of(status, ctype, payload)["type"] == "invalid_request_error"


def test_unknown_model_is_404(keyed_tiny_server):
    status, ctype, payload = request(keyed_tiny_server, "POST", CHAT, {"model": "gpt-17", "messages": MSG})
    assert status == 404 and error_of(status, ctype, payload)["code"] == "model_not_found"
    status, ctype, payload = request(keyed_tiny_server, "GET", "/v1/nothing-here")
    assert status == 404 and error_of(status, ctype, payload)


def test_missing_or_wrong_api_key_is_401(keyed_tiny_server):
    for headers in ({"Content-Type": "application/json"}, {"Authorization": "Bearer nope"}, {"Authorization": API_KEY}):
        status, ctype, payload = request(keyed_tiny_server, "POST", CHAT, {"messages": MSG}, headers=headers)
        assert status == 401 and error_of(status, ctype, payload)["code"] == "invalid_api_key"
    status, _, _ = request(keyed_tiny_server, "GET", "/v1/models", headers={})
    assert status == 401
    # Health, the page, the document and metrics stay open.
    for path in ("/health", "/", "/openapi.json", "/metrics"):
        assert request(keyed_tiny_server, "GET", path, headers={})[0] == 200


def test_huge_body_is_413_while_others_are_served(keyed_tiny_server):
    results = {}

    def stream_other():
        status, ctype, payload = request(keyed_tiny_server, "POST", CHAT, {"messages": MSG, "max_tokens": 50, "stream": True,
                                                                       "ignore_eos": True})
        results["other"] = (status, payload)

    t = threading.Thread(target=stream_other)
    t.start()
    # 100 MB announced and sent (as much as the server reads before answering).
    s = socket.create_connection(("127.0.0.1", keyed_tiny_server.port), timeout=60)
    size = 100 * 1024 * 1024
    s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n" % (CHAT, API_KEY, size)).encode())
    chunk = b" " * (1 << 20)
    try:
        for _ in range(100):
            s.sendall(chunk)
    except OSError:
        pass  # the server answered and closed
    reply = b""
    try:
        while b"\r\n\r\n" not in reply or len(reply) < 200:
            data = s.recv(65536)
            if not data:
                break
            reply += data
    except OSError:
        pass
    s.close()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"request_too_large"' in reply
    # Chunked transfer without a length: limited while reading.
    c = http.client.HTTPConnection("127.0.0.1", keyed_tiny_server.port, timeout=60)
    c.putrequest("POST", CHAT)
    c.putheader("Authorization", "Bearer " + API_KEY)
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    try:
        for _ in range(4):
            c.send(b"100000\r\n" + b" " * 0x100000 + b"\r\n")
        c.send(b"0\r\n\r\n")
    except OSError:
        pass
    r = c.getresponse()
    assert r.status == 413
    c.close()
    t.join(60)
    status, payload = results["other"]
    assert status == 200 and payload.rstrip().endswith(b"data: [DONE]")
