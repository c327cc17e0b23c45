"""Hibernation and durability: an actor hibernated (on request, when idle, or as the least
recently used over the memory budget) wakes on its next message and continues bit-identically;
a server killed with SIGKILL right after a turn completed keeps that turn, and continuing
after the restart gives exactly what an uninterrupted server gives."""
import time

SETTINGS = {"system": "You are a poet.", "temperature": 0.9, "top_p": 0.95, "seed": 7, "max_tokens": 12}
TURNS = ["Hello there.", "Tell me about the sea.", "And the mountains?", "Goodbye."]


def say(c, actor, text):
    r = c.post(f"/v1/actors/{actor}/messages", json={"content": text})
    assert r.status_code == 200, r.text
    return r.json()


def state(c, actor):
    return c.get(f"/v1/actors/{actor}").json()


def test_hibernate_and_wake_continue_bit_identically(make_server):
    s = make_server()
    c = s.client()
    woken, control = (c.post("/v1/actors", json=SETTINGS).json()["id"] for _ in range(2))
    for i, text in enumerate(TURNS):
        a = say(c, woken, text)
        b = say(c, control, text)
        assert a["output"] == b["output"] and a["usage"] == b["usage"]
        r = c.post(f"/v1/actors/{woken}/hibernate")
        assert r.json()["state"] == "hibernated" and r.json()["memory_bytes"] == 0
    stats = c.get("/v1/stats").json()
    assert stats["hibernations"] >= len(TURNS) and stats["replay_mismatches"] == 0
    # the sampler's state lives in the actor's memory: were it lost, the temperature-0.9 replies would differ
    assert state(c, woken)["turns"] == len(TURNS) and state(c, woken)["tokens_generated"] > 0


def test_idle_actor_hibernates_and_wakes(make_server):
    s = make_server("--idle-seconds", "0.5")
    c = s.client()
    actor = c.post("/v1/actors", json=SETTINGS).json()["id"]
    first = say(c, actor, TURNS[0])
    deadline = time.time() + 5
    while state(c, actor)["state"] != "hibernated" and time.time() < deadline:
        time.sleep(0.1)
    assert state(c, actor)["state"] == "hibernated"
    second = say(c, actor, TURNS[1])
    assert second["wake_ms"] > 0 and second["usage"]["cached_tokens"] == first["usage"]["context_tokens"]


def test_memory_budget_hibernates_least_recently_used(make_server):
    # each tiny-model actor holds 4 MiB of KV (2,048 tokens): a 9 MiB budget keeps two awake
    s = make_server("--memory-budget", str(9 << 20))
    c = s.client()
    ids = [c.post("/v1/actors", json=SETTINGS).json()["id"] for _ in range(3)]
    for a in ids:
        say(c, a, "Hi")
        time.sleep(0.05)
    deadline = time.time() + 5
    while time.time() < deadline and state(c, ids[0])["state"] != "hibernated":
        time.sleep(0.1)
    assert [state(c, a)["state"] for a in ids] == ["hibernated", "awake", "awake"]
    assert c.get("/v1/stats").json()["resident_bytes"] <= 9 << 20


def test_sigkill_keeps_completed_turns(make_server, tmp_path):
    control = make_server()
    cc = control.client()
    ref = cc.post("/v1/actors", json=SETTINGS).json()["id"]
    expected = [say(cc, ref, t)["output"] for t in TURNS]

    store = tmp_path / "crash-store"
    s = make_server(store=store)
    actor = s.client().post("/v1/actors", json=SETTINGS).json()["id"]
    got = []
    for i, text in enumerate(TURNS):  # a kill right after each acknowledged turn, then a restart
        got.append(say(s.client(), actor, text)["output"])
        s.kill()
        s = make_server(store=store)
        st = state(s.client(), actor)
        assert st["turns"] == i + 1 and st["state"] == "hibernated"
    assert got == expected
    # the last restart replays the log on wake: the replies recomputed match the logged ones
    c = s.client()
    say(c, actor, "One more.")
    say(cc, ref, "One more.")
    stats = c.get("/v1/stats").json()
    assert stats["replayed_turns"] >= 1 and stats["replay_mismatches"] == 0
    assert state(c, actor)["context_tokens"] == state(cc, ref)["context_tokens"]
