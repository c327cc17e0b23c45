"""Keys, limits and hostile clients: another key's actor is 404; oversized bodies, malformed JSON
and unknown fields are refused in OpenAI's error shape; slow-loris connections time out without
holding up anyone else; a client that disconnects mid-stream frees its slot."""
import json
import socket
import threading
import time

import httpx

from conftest import KEY_A, KEY_B


def error_of(r, status):
    assert r.status_code == status, r.text
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"}
    return e


def test_other_keys_actor_is_404(server):
    a, b = server.client(KEY_A), server.client(KEY_B)
    actor = a.post("/v1/actors", json={}).json()["id"]
    assert a.post(f"/v1/actors/{actor}/messages", json={"content": "hi", "max_tokens": 2}).status_code == 200
    for method, path, body in [("GET", "", None), ("POST", "/messages", {"content": "x"}), ("DELETE", "", None),
                               ("POST", "/hibernate", None), ("POST", "/snapshot", None)]:
        r = b.request(method, f"/v1/actors/{actor}{path}", json=body)
        assert error_of(r, 404)["code"] == "actor_not_found"
    assert actor not in [x["id"] for x in b.get("/v1/actors").json()["data"]]
    assert actor in [x["id"] for x in a.get("/v1/actors").json()["data"]]
    resp = a.post("/v1/responses", json={"model": "default", "input": "hi", "max_output_tokens": 2}).json()["id"]
    r = b.post("/v1/responses", json={"model": "default", "input": "x", "previous_response_id": resp})
    assert error_of(r, 404)["param"] == "previous_response_id"
    assert a.get(f"/v1/actors/{actor}").json()["turns"] == 1  # untouched by the other key
    assert httpx.get(server.url + "/v1/actors").status_code == 401  # no key at all


def test_bad_bodies(server):
    c = server.client()
    big = {"model": "default", "messages": [{"role": "user", "content": "x" * 70000}]}
    assert error_of(c.post("/v1/chat/completions", json=big), 413)["code"] == "request_too_large"
    # the same without a Content-Length (chunked upload) is cut off at the limit too
    r = c.post("/v1/chat/completions", content=iter([json.dumps(big).encode()[i:i + 8192] for i in range(0, 70100, 8192)]))
    assert error_of(r, 413)["code"] == "request_too_large"
    e = error_of(c.post("/v1/chat/completions", content=b'{"model": "default", "messages": [}'), 400)
    assert e["code"] == "invalid_json"
    e = error_of(c.post("/v1/chat/completions", json={"model": "default", "messages": [{"role": "user", "content": "x"}],
                                                       "frobnicate": 1}), 400)
    assert e["param"] == "frobnicate" and "Unrecognized request argument" in e["message"]
    error_of(c.post("/v1/actors", json={"flavour": "x"}), 400)
    error_of(c.post("/v1/chat/completions", json=[1, 2]), 400)
    error_of(c.get("/v1/nothing"), 404)
    assert c.get("/v1/models").status_code == 200  # the server is fine after all that


def test_stream_limit_and_disconnect_frees_the_slot(server):
    c = server.client(KEY_B)
    # greedy, the tiny model continues this text for all 1,800 tokens (seconds of work)
    body = {"model": "default", "prompt": "Once upon a time", "max_tokens": 1800, "temperature": 0, "stream": True}
    short = {"model": "default", "prompt": "Hi", "max_tokens": 2}
    # 4 streams per key (the fixture's --max-streams): a 5th request is refused while they run
    clients = [server.client(KEY_B) for _ in range(4)]
    streams = [cl.stream("POST", "/v1/completions", json=body) for cl in clients]
    responses = [s.__enter__() for s in streams]
    lines = [r.iter_lines() for r in responses]  # kept: a dropped iterator closes its connection
    for r, it in zip(responses, lines):
        assert r.status_code == 200
        next(it)  # the first event arrived: the stream is running
    assert c.get("/v1/stats").json()["streams_open"] >= 4
    e = error_of(c.post("/v1/completions", json=short), 429)
    assert e["code"] == "rate_limit_exceeded"
    # another key is not affected
    assert server.client(KEY_A).post("/v1/completions", json=short).status_code == 200
    # the clients hang up mid-stream: their slots come back while the turns are still running
    for s, cl in zip(streams, clients):
        s.__exit__(None, None, None)
        cl.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        st = c.get("/v1/stats").json()
        if st["streams_open"] == 0:
            break
        time.sleep(0.05)
    assert st["streams_open"] == 0 and st["turns_running"] > 0
    assert c.post("/v1/completions", json=short).status_code == 200


def test_slow_loris(server):
    """Connections that send half a request and stall are closed after --request-timeout (2 s
    here) and do not delay other clients meanwhile."""
    slow = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
        slow.append(s)
    t0 = time.time()
    r = server.client().post("/v1/completions", json={"model": "default", "prompt": "Hi", "max_tokens": 4})
    assert r.status_code == 200 and time.time() - t0 < 2.0
    closed = 0
    for s in slow:
        s.settimeout(8)
        try:
            closed += s.recv(100) == b""
        except (ConnectionResetError, socket.timeout):
            closed += 1
        s.close()
    assert closed == len(slow)


def test_many_clients_at_once(server):
    """Concurrent requests of two keys all succeed (each key under its stream limit)."""
    results = []

    def one(key, i):
        with server.client(key) as c:
            r = c.post("/v1/completions", json={"model": "default", "prompt": f"Number {i}", "max_tokens": 6,
                                                "temperature": 0})
            results.append(r.status_code)

    threads = [threading.Thread(target=one, args=(k, i)) for i in range(4) for k in (KEY_A, KEY_B)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8


def test_turn_time_limit_and_recovery(make_server):
    """A turn over --turn-timeout fails with 504 and leaves no trace: the actor is rebuilt from the
    store (where that turn never happened) and carries on; the server and other actors are fine."""
    s = make_server("--turn-timeout", "0.1")
    c = s.client()
    a = c.post("/v1/actors", json={"temperature": 0}).json()["id"]
    first = c.post(f"/v1/actors/{a}/messages", json={"content": "Hello", "max_tokens": 4}).json()
    long = {"model": "default", "prompt": "Once upon a time", "max_tokens": 1800, "temperature": 0}
    assert "timeout" in error_of(c.post("/v1/completions", json=long), 504)["message"]
    # a stored actor: ~1,500 tokens to prefill take longer than 0.1 s; the half-done turn is dropped
    essay = " ".join(["the quiet sea under a grey sky"] * 220)
    assert error_of(c.post(f"/v1/actors/{a}/messages", json={"content": essay, "max_tokens": 4}), 504)
    st = c.get(f"/v1/actors/{a}").json()
    assert st["turns"] == 1 and st["state"] == "hibernated" and not st["busy"]
    again = c.post(f"/v1/actors/{a}/messages", json={"content": "Hello again", "max_tokens": 4}).json()
    assert again["turn"] == 2 and again["usage"]["cached_tokens"] == first["usage"]["context_tokens"]
    assert c.get("/v1/models").status_code == 200
