"""Cluster mode (issue 22): 3 NATS JetStream servers (tools/nats-cluster.sh) and 3 `driftwood serve
--cluster` nodes on this machine, tiny model, CPU.

- The must-show run: 200 conversations of 3 turns through random nodes, greedy, first without
  failures (the reference), then again on fresh actors with one Driftwood node (the one holding the
  most actors) and one NATS server (the leader of the nodes' lease bucket) SIGKILLed once 40% of the
  turns are done. Clients retry a turn (same `turn` number) on a random live node after a
  connection error, 502, 503 or 504. Every turn
  must complete with a reply bit-identical to the reference's, every actor must report all its
  turns, and no actor may ever be active on two nodes, judged from the nodes' `cluster-event` log
  lines (an activation runs from a claim to that node's next release, fenced, lease-lost or drop
  of the actor, or to a lease-lost of the whole node, or to the kill for the killed node).
- Forwarding and placement: a request to a node that does not hold the actor is served by the one
  that does (X-Driftwood-Node), and each new actor goes to the node with the most free KV memory."""
import json
import os
import random
import re
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import KEY_A, ROOT, Server

NATS_CLUSTER = os.path.join(ROOT, "tools", "nats-cluster.sh")
CONVERSATIONS = 200
TURNS = 3
CLIENTS = 16
KILL_AFTER = 0.4  # of all the failure run's turns completed
TURN_DEADLINE_S = 60
SETTINGS = {"temperature": 0, "max_tokens": 8}
RETRY_STATUS = (502, 503, 504)
LEASE_STREAM = "KV_dw_nodes"  # the JetStream stream behind the nodes' lease bucket (src/server/cluster_impl.h)


SUBJECTS = ("the sea", "a king", "the mountains", "bread", "a city", "the stars", "a shepherd", "the river",
            "an angel", "the temple", "a storm", "the desert", "a lamp", "the harvest")
ASKS = ("Tell me about {}.", "What did {} say?", "Where is {} now?", "Why does {} matter?", "Sing of {}.")


def message(conversation, turn):
    """A distinct message for each conversation and turn."""
    k = conversation * TURNS + turn
    return f"{ASKS[k % len(ASKS)].format(SUBJECTS[k // len(ASKS) % len(SUBJECTS)])} ({conversation}.{turn})"


class Cluster:
    """3 NATS servers in DIR/nats and nodes n1..n3 (conftest's Server: log in DIR/nI.log)."""

    def __init__(self, d, keys_file, extra=()):
        self.dir = str(d)
        self.nats_dir = os.path.join(self.dir, "nats")
        self.nodes = []
        out = subprocess.run([NATS_CLUSTER, "start", self.nats_dir], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            pytest.fail("the NATS cluster did not start (tools/nats-cluster.sh; is nats-server installed? Debian: "
                        f"apt-get install nats-server):\n{out.stderr}{out.stdout}", pytrace=False)
        self.urls = out.stdout.strip().splitlines()[-1]
        self.monitors = [open(os.path.join(self.nats_dir, f"s{i}.monitor")).read().strip() for i in range(3)]
        self.nats_killed = None
        self.http = {}
        try:
            for i in (1, 2, 3):
                s = Server(os.path.join(self.dir, f"n{i}"), keys_file,
                           ["--cluster", self.urls, "--node", f"n{i}", *extra])
                s.name = f"n{i}"
                s.killed_at = None
                self.nodes.append(s)
                s.start()
        except BaseException:
            self.close()
            raise
        self.http = {s.name: httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30,
                                          limits=httpx.Limits(max_connections=CLIENTS * 2)) for s in self.nodes}

    def live(self):
        return [s for s in self.nodes if s.killed_at is None]

    def node(self, name):
        return next(s for s in self.nodes if s.name == name)

    def kill_node(self, name):
        s = self.node(name)
        s.kill()
        s.killed_at = time.time()  # it is dead now: none of its activations lasts past this
        return s.killed_at

    def stream_leaders(self):
        """{stream name: index of the NATS server leading it}, asked of any server still up."""
        for i, m in enumerate(self.monitors):
            if i == self.nats_killed:
                continue
            try:
                j = json.load(urllib.request.urlopen(m + "/jsz?accounts=true&streams=true", timeout=5))
            except OSError:
                continue
            out = {}
            for acc in j.get("account_details") or []:
                for st in acc.get("stream_detail") or []:
                    leader = (st.get("cluster") or {}).get("leader") or ""
                    if re.fullmatch(r"s[012]", leader):
                        out[st["name"]] = int(leader[1])
            return out
        return {}

    def nats_victim(self):
        """The NATS server whose loss hurts most: the leader of the node-lease bucket (every node's
        lease refresh waits for a new leader), else the one leading the most streams."""
        leaders = self.stream_leaders()
        if LEASE_STREAM in leaders:
            return leaders[LEASE_STREAM], leaders
        counts = [list(leaders.values()).count(i) for i in range(3)]
        return counts.index(max(counts)), leaders

    def kill_nats(self, i):
        subprocess.run([NATS_CLUSTER, "kill", self.nats_dir, str(i)], check=True, timeout=30)
        self.nats_killed = i

    def events(self):
        """Every node's cluster-event lines, in each node's log order: {node: [event, ...]}."""
        out = {}
        for s in self.nodes:
            with open(s.log_path, errors="replace") as f:
                out[s.name] = [json.loads(m.group(1)) for m in re.finditer(r"cluster-event (\{.*\})", f.read())]
        return out

    def close(self):
        for c in self.http.values():
            c.close()
        for s in self.nodes:
            s.stop()
        subprocess.run([NATS_CLUSTER, "stop", self.nats_dir], timeout=60)


@pytest.fixture
def make_cluster(tmp_path, keys_file):
    made = []

    def make(*extra):
        c = Cluster(tmp_path / f"cluster{len(made)}", keys_file, extra)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def request(cluster, method, path, deadline, json_body=None, what=""):
    """Sends to random live nodes until a reply other than a connection error, 502, 503, 504 or
    actor_busy (a retry that reached the actor while the first try still ran); returns it."""
    tries = []
    while True:
        s = random.choice(cluster.live())
        try:
            r = cluster.http[s.name].request(method, path, json=json_body)
            if r.status_code not in RETRY_STATUS and not (r.status_code == 409 and "actor_busy" in r.text):
                return r, tries
            tries.append(f"{s.name}: {r.status_code} {r.text[:200]}")
        except httpx.TransportError as e:
            tries.append(f"{s.name}: {type(e).__name__} {e}")
        if time.time() > deadline:
            raise AssertionError(f"{what}: no success before the deadline; tries: {tries[-10:]}")
        time.sleep(min(0.05 * len(tries), 0.5))


def converse(cluster, actors, on_progress=None):
    """Every actor's TURNS turns, turn by turn over all of them (a round of turn 1 in random order,
    then of turn 2, ...), CLIENTS at a time, each through a random live node. Returns
    {conversation: [reply, ...]} and how many turns needed a retry and were replayed."""
    replies = {k: [None] * TURNS for k in range(len(actors))}
    stats = {"retried": 0, "replayed": 0, "served_by": {}}
    lock = threading.Lock()
    run_deadline = time.time() + 240

    def turn(k, n):
        deadline = min(time.time() + TURN_DEADLINE_S, run_deadline)
        what = f"conversation {k} (actor {actors[k]}) turn {n}"
        r, tries = request(cluster, "POST", f"/v1/actors/{actors[k]}/messages", deadline,
                           {"content": message(k, n), "turn": n}, what)
        assert r.status_code == 200, f"{what}: {r.status_code} {r.text} (earlier tries: {tries})"
        body = r.json()
        assert body["turn"] == n, f"{what}: reply for turn {body['turn']}"
        replies[k][n - 1] = body["output"]
        with lock:
            stats["retried"] += bool(tries)
            stats["replayed"] += bool(body.get("replayed"))
            node = r.headers.get("X-Driftwood-Node")
            stats["served_by"][node] = stats["served_by"].get(node, 0) + 1
        if on_progress:
            on_progress()

    with ThreadPoolExecutor(CLIENTS) as pool:
        for n in range(1, TURNS + 1):
            order = list(range(len(actors)))
            random.shuffle(order)
            for f in [pool.submit(turn, k, n) for k in order]:
                f.result()
    return replies, stats


def create_actors(cluster, count):
    deadline = time.time() + 120
    ids = []
    for k in range(count):
        r, _ = request(cluster, "POST", "/v1/actors", deadline, SETTINGS, f"creating actor {k}")
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def activations(events, killed):
    """{actor: [(node, start, end, how it ended)]} from each node's events in its log order; an
    activation still open at the end lasts until the node's kill time (killed: {node: t}) or forever."""
    out = {}
    for node, evs in events.items():
        open_since = {}
        for e in evs:
            assert e["node"] == node, f"an event of {e['node']} in {node}'s log: {e}"
            a = e["actor"]
            if e["event"] == "claim":
                open_since.setdefault(a, e)
            elif e["event"] == "lease-lost" and not a:  # the node's lease: every activation it had ends
                for a, c in open_since.items():
                    out.setdefault(a, []).append((node, c["t"], e["t"], "lease-lost"))
                open_since.clear()
            elif e["event"] in ("release", "fenced", "lease-lost", "drop"):
                if a in open_since:
                    out.setdefault(a, []).append((node, open_since.pop(a)["t"], e["t"], e["event"]))
            else:
                raise AssertionError(f"unknown cluster event: {e}")
        for a, e in open_since.items():
            end, how = (killed[node], "kill") if node in killed else (float("inf"), "end")
            out.setdefault(a, []).append((node, e["t"], end, how))
    return out


def overlaps(acts):
    bad = []
    for a, spans in acts.items():
        for i, x in enumerate(spans):
            for y in spans[i + 1:]:
                if x[0] != y[0] and x[1] < y[2] and y[1] < x[2]:
                    bad.append((a, x, y))
    return bad


def test_failover_keeps_every_turn_and_one_activation(make_cluster):
    random.seed(22)
    c = make_cluster("--max-streams", str(4 * CLIENTS))  # all clients use one key: not its limit under test
    t0 = time.time()

    reference_actors = create_actors(c, CONVERSATIONS)
    reference, ref_stats = converse(c, reference_actors)
    t_ref = time.time() - t0

    actors = create_actors(c, CONVERSATIONS)
    done = [0]
    kill_at = int(KILL_AFTER * CONVERSATIONS * TURNS)
    killed = {}
    lock = threading.Lock()

    def progress():
        with lock:
            done[0] += 1
            if done[0] != kill_at:
                return
        # the node holding the most actors now, and the NATS server whose loss hurts most
        held = {s.name: 0 for s in c.nodes}
        for a in c.http["n1"].get("/v1/cluster").json()["actors"]:
            if a["node"] in held:
                held[a["node"]] += 1
        victim = max(held, key=held.get)
        nats_victim, leaders = c.nats_victim()
        killed[victim] = c.kill_node(victim)
        c.kill_nats(nats_victim)
        killed["held"], killed["nats"], killed["leaders"] = held, nats_victim, leaders

    got, stats = converse(c, actors, progress)
    t_fail = time.time() - t0 - t_ref
    victim = next(k for k in killed if re.fullmatch(r"n\d", k))
    print(f"\nreference run {t_ref:.1f} s ({ref_stats}); failure run {t_fail:.1f} s ({stats}); killed {victim} "
          f"(held {killed['held']}) and NATS server s{killed['nats']} (stream leaders {killed['leaders']})")

    # every turn completed and gave exactly the reply of the run without failures (replies that
    # differ between conversations: a server answering the same text to everything would not do)
    distinct = {r for k in reference for r in reference[k]}
    assert len(distinct) >= 20 and "" not in distinct, distinct
    mismatched = [(k, n + 1, reference[k][n], got[k][n]) for k in range(CONVERSATIONS) for n in range(TURNS)
                  if reference[k][n] != got[k][n]]
    assert not mismatched, f"{len(mismatched)} replies differ from the reference, e.g. {mismatched[:5]}"
    assert killed["held"][victim] > 0, "the killed node held no actor: nothing failed over"
    assert stats["retried"] > 0, "no turn needed a retry: the kill hit nothing in flight or held"

    # no actor was ever active on two nodes
    events = c.events()
    print("events after the kill:", {n: {k: sum(1 for e in evs if e["event"] == k and e["t"] >= killed[victim])
                                         for k in ("claim", "release", "fenced", "lease-lost", "drop")}
                                     for n, evs in events.items()},
          "; lease-lost at", [f"{e['node']} +{e['t'] - killed[victim]:.2f} s" for evs in events.values() for e in evs
                               if e["event"] == "lease-lost"])
    acts = activations(events, {victim: killed[victim]})
    bad = overlaps(acts)
    assert not bad, f"{len(bad)} actors active on two nodes at once, e.g. {bad[:5]}"
    # and the killed node's actors did move: claimed by another node after the kill
    moved = [a for a, spans in acts.items()
             if any(s[0] == victim for s in spans) and any(s[0] != victim and s[1] >= killed[victim] for s in spans)]
    assert moved, f"no actor of {victim} was claimed by another node after the kill"
    unclaimed = set(actors) - set(acts)
    assert not unclaimed, f"{len(unclaimed)} actors ran turns without a claim event, e.g. {sorted(unclaimed)[:5]}"

    # every actor has all its turns, read back through the live nodes
    deadline = time.time() + 60
    wrong = {}
    for a in actors + reference_actors:
        r, _ = request(c, "GET", f"/v1/actors/{a}", deadline, what=f"state of {a}")
        if r.status_code != 200 or r.json()["turns"] != TURNS:
            wrong[a] = f"{'failure' if a in actors else 'reference'} run's, via {r.headers.get('X-Driftwood-Node')}: " \
                       f"{r.status_code} {r.text}"
    holders = {x["id"]: x["node"] for x in c.http[c.live()[0].name].get("/v1/cluster").json()["actors"]}
    assert not wrong, f"{len(wrong)} actors do not report {TURNS} turns, e.g. " \
        f"{[(a, w, 'held by ' + str(holders.get(a))) for a, w in list(wrong.items())[:3]]}"


def test_forwarding_and_placement(make_cluster):
    c = make_cluster()
    n1 = c.http["n1"]

    def view(node="n1"):
        r = c.http[node].get("/v1/cluster")
        assert r.status_code == 200, r.text
        return r.json()

    for s in c.nodes:
        v = view(s.name)
        assert v["node"] == s.name and sorted(n["name"] for n in v["nodes"]) == ["n1", "n2", "n3"], v
        assert all(n["live"] for n in v["nodes"]), v

    # placement: each new actor (created through n1) goes to the node with the most free KV memory;
    # its first turn takes KV memory there, so the next goes elsewhere: 3 actors on 3 nodes
    placed = []
    for i in range(3):
        before = {n["name"]: n["free_kv_bytes"] for n in view()["nodes"]}
        r = n1.post("/v1/actors", json=SETTINGS)
        assert r.status_code == 201, r.text
        a = r.json()["id"]
        r = n1.post(f"/v1/actors/{a}/messages", json={"content": f"Placement {i}: tell me a story.", "turn": 1})
        assert r.status_code == 200, r.text
        owner = r.headers.get("X-Driftwood-Node")
        assert before[owner] == max(before.values()), f"actor {i} went to {owner}; free KV before: {before}"
        placed.append((a, owner))
        deadline = time.time() + 10  # until the owner's published free KV shows the actor's memory
        while next(n["free_kv_bytes"] for n in view()["nodes"] if n["name"] == owner) >= before[owner]:
            assert time.time() < deadline, f"{owner}'s free_kv_bytes stayed {before[owner]} with {a} awake on it"
            time.sleep(0.1)
    assert sorted(o for _, o in placed) == ["n1", "n2", "n3"], f"3 actors placed on {placed}"

    # forwarding: every node answers for every actor, served by the owner that /v1/cluster names
    for a, owner in placed:
        for s in c.nodes:
            owners = {x["id"]: x["node"] for x in view(s.name)["actors"]}
            assert owners.get(a) == owner, f"{s.name}'s /v1/cluster says {a} is on {owners.get(a)}, not {owner}"
            r = c.http[s.name].get(f"/v1/actors/{a}")
            assert r.status_code == 200 and r.headers.get("X-Driftwood-Node") == owner, \
                f"GET {a} via {s.name}: {r.status_code} served by {r.headers.get('X-Driftwood-Node')}, owner {owner}"
        turns = r.json()["turns"]
        for s in c.nodes:
            turns += 1
            last = {"content": f"Via {s.name}.", "turn": turns}
            r = c.http[s.name].post(f"/v1/actors/{a}/messages", json=last)
            assert r.status_code == 200 and r.json()["turn"] == turns, f"via {s.name}: {r.status_code} {r.text}"
            assert r.headers.get("X-Driftwood-Node") == owner, f"a turn via {s.name} served by " \
                f"{r.headers.get('X-Driftwood-Node')}, owner {owner}"
        # a retried turn replays its logged reply; a turn number that is not next is refused
        again = c.http["n2"].post(f"/v1/actors/{a}/messages", json=last)
        assert again.status_code == 200 and again.json()["output"] == r.json()["output"] \
            and again.json().get("replayed") is True, again.text
        assert c.http[owner].get(f"/v1/actors/{a}").json()["turns"] == turns
        skip = c.http["n3"].post(f"/v1/actors/{a}/messages", json={"content": "Skip.", "turn": turns + 2})
        assert skip.status_code == 409 and skip.json()["error"]["code"] == "turn_conflict", skip.text


@pytest.mark.parametrize("args, says", [
    (["--cluster", "nats://127.0.0.1:1", "--node", "n1"], "No server available"),  # nothing listens there
    (["--cluster", "nats://127.0.0.1:1"], "--node"),                                # a cluster needs a node name
    (["--cluster", "nats://127.0.0.1:1", "--node", "a.b"], "--node"),               # not a subject token
    (["--cluster", "nats://127.0.0.1:1", "--node", "n1", "--lease-ms", "5"], "--lease-ms"),
])
def test_bad_cluster_arguments(tmp_path, args, says):
    """A node that cannot join says why in one line and exits non-zero, at once."""
    t0 = time.time()
    out = subprocess.run([os.path.join(ROOT, os.environ.get("DW_BUILD", "build"), "bin", "driftwood"), "serve",
                          "--listen", "127.0.0.1:0", "--store", str(tmp_path / "store"), *args],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], out.stderr
    assert time.time() - t0 < 10


def test_page_shows_nodes_and_where_actors_live(make_cluster):
    """The page at / of any node, in a headless browser: the cluster's three nodes, and each of
    the key's actors with the node it lives on (as /v1/cluster says)."""
    from test_page import CHROMEDRIVER, CHROMIUM, wait_for

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("Debian's chromium and chromium-driver are needed (tools/setup.d/10-debian.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    c = make_cluster()
    ids = [c.http["n1"].post("/v1/actors", json=SETTINGS).json()["id"] for _ in range(3)]
    where = {a["id"]: a["node"] for a in c.http["n2"].get("/v1/cluster").json()["actors"]}
    assert sorted(where) == sorted(ids) and all(where.values()), where
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        d.get(c.nodes[2].url + "/")
        d.find_element(By.ID, "key").send_keys(KEY_A)
        d.find_element(By.ID, "save-key").click()
        nodes = wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#nodes .node"))
        assert sorted(n.get_attribute("data-name") for n in nodes) == ["n1", "n2", "n3"]
        assert "(this one)" in d.find_element(By.CSS_SELECTOR, '#nodes .node[data-name="n3"]').text
        for a in ids:
            row = wait_for(lambda: d.find_elements(By.CSS_SELECTOR, f'tr[data-id="{a}"]'))[0]
            assert row.find_elements(By.TAG_NAME, "td")[-1].text == where[a]
    finally:
        d.quit()


def test_paused_node_cannot_write_an_actor_taken_over(make_cluster):
    """A node paused (SIGSTOP) mid-turn past its lease, while another node takes its actor over,
    must not commit that turn when it resumes: the turn fails for its client, the actor's log holds
    only the other node's turns, and the conversation goes on from them."""
    import signal

    c = make_cluster("--lease-ms", "1000")
    n1 = c.http["n1"]

    def paused_turn(seed):
        """A new actor's second turn, streamed from its holder, which is SIGSTOPped after the first
        token and left paused past its lease; then another node takes turn 2. Returns None when
        the turn had finished before the pause landed (the tiny model can answer in a few
        milliseconds: a sampled reply of up to 1,500 tokens is asked for, and a new seed tried)."""
        a = n1.post("/v1/actors", json={"temperature": 0, "max_tokens": 200}).json()["id"]
        r = n1.post(f"/v1/actors/{a}/messages", json={"content": "Tell me about the sea.", "max_tokens": 8, "turn": 1})
        holder = r.headers["X-Driftwood-Node"]
        other = next(s.name for s in c.nodes if s.name != holder)
        h = c.node(holder)
        stream = httpx.Client(base_url=h.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=60)
        events = []

        def run_turn():
            body = {"content": "Now a long story about ships.", "stream": True, "turn": 2, "temperature": 2.0,
                    "seed": seed, "max_tokens": 1500}
            with stream.stream("POST", f"/v1/actors/{a}/messages", json=body) as resp:
                for line in resp.iter_lines():
                    if line.startswith("data: {"):
                        events.append(json.loads(line[6:]))
                        if len(events) == 1:
                            h.proc.send_signal(signal.SIGSTOP)

        t = threading.Thread(target=run_turn)
        t.start()
        deadline = time.time() + 30
        while not events and time.time() < deadline:
            time.sleep(0.01)
        assert events, "the streamed turn never started"
        time.sleep(2.5)  # past the paused holder's 1 s lease: its entry expires
        t_takeover = time.time()
        r = None
        if events[-1]["type"] != "done":
            r = c.http[other].post(f"/v1/actors/{a}/messages", json={"content": "What is a boat?", "max_tokens": 8, "turn": 2})
        if r is None or (r.status_code == 409 and "turn_conflict" in r.text):  # finished before the pause
            h.proc.send_signal(signal.SIGCONT)
            t.join(60)
            stream.close()
            return None
        return a, holder, other, h, stream, t, events, r, t_takeover

    for seed in range(1, 9):
        caught = paused_turn(seed)
        if caught:
            break
    assert caught, "every streamed turn finished before its node was paused"
    a, holder, other, h, stream, t, events, r, t_takeover = caught
    assert r.status_code == 200, r.text
    taken_by = r.headers["X-Driftwood-Node"]
    assert taken_by != holder and r.json()["turn"] == 2
    h.proc.send_signal(signal.SIGCONT)
    t.join(60)
    stream.close()
    assert events[-1]["type"] == "error", events[-1]  # the paused node's turn did not complete
    r3 = c.http[other].post(f"/v1/actors/{a}/messages", json={"content": "And a ship?", "max_tokens": 8, "turn": 3})
    assert r3.status_code == 200 and r3.json()["turn"] == 3, r3.text
    assert r3.headers["X-Driftwood-Node"] == taken_by
    state = c.http[holder].get(f"/v1/actors/{a}").json()
    assert state["turns"] == 3, state
    # the resumed node noticed: its lease lapsed and it let the actor go, never claiming it again
    ev = [e for e in c.events()[holder] if e["actor"] in (a, "")]
    kinds = [e["event"] for e in ev]
    assert "lease-lost" in kinds and kinds[-1] in ("drop", "release", "fenced"), kinds
    assert not [e for e in ev if e["event"] == "claim" and e["t"] > t_takeover], ev


def test_servers_with_credentials(tmp_path, keys_file):
    """NATS servers that require a user: a node with the right credentials in its URLs joins and
    serves; one with a wrong password fails at once, in one line that does not show it."""
    d = str(tmp_path / "nats")
    out = subprocess.run([NATS_CLUSTER, "start", d], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "NATS_CLUSTER_AUTH": "driftwood:pa55-word"})
    assert out.returncode == 0, out.stderr
    urls = out.stdout.strip().splitlines()[-1]
    assert "driftwood:pa55-word@" in urls
    s = Server(tmp_path / "n1", keys_file, ["--cluster", urls, "--node", "n1"])
    try:
        s.start()
        c = s.client()
        a = c.post("/v1/actors", json=SETTINGS).json()["id"]
        r = c.post(f"/v1/actors/{a}/messages", json={"content": "Hello", "turn": 1})
        assert r.status_code == 200 and r.headers["X-Driftwood-Node"] == "n1", r.text
        bad = subprocess.run([os.path.join(ROOT, os.environ.get("DW_BUILD", "build"), "bin", "driftwood"), "serve",
                              "--listen", "127.0.0.1:0", "--store", str(tmp_path / "n2"), "--node", "n2",
                              "--cluster", urls.replace("pa55-word", "wrong-one")],
                             capture_output=True, text=True, timeout=30)
        assert bad.returncode != 0
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and "Authorization" in lines[0] and "wrong-one" not in lines[0], bad.stderr
    finally:
        s.stop()
        subprocess.run([NATS_CLUSTER, "stop", d], timeout=60)
