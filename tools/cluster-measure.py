#!/usr/bin/env python3
"""Measures Driftwood's cluster mode (issue 22; numbers for docs/PERFORMANCE.md) on clusters it
starts itself: 3 NATS JetStream servers (tools/nats-cluster.sh) and 3 `driftwood serve --cluster`
nodes n1..n3 on this machine.

  forwarding  a short request sent to the node that holds the actor against the same request sent
              to another node (which forwards it to the holder): median and p99 over --reps
              pairs (alternating which goes first) after --warmup, for GET /v1/actors/ID and for a
              1-token turn; every reply must come from the holder (X-Driftwood-Node)
  failover    an actor with a context of each --contexts size (one long message); its node is
              SIGKILLed and the next turn is streamed through another node, retried on connection
              errors, 502, 503 and 504: the time from the kill to that turn's first token, with
              when the new holder claimed the actor (its cluster-event line) and when the turn's
              response began (its status line). Twice per size (--variants): the actor snapshotted just
              before the kill (POST .../snapshot: the new node restores it: "snapshot") and not
              (the new node restores what the store holds and replays the logged turns since:
              "replay"). A fresh cluster each time.
  store       `driftwood bench store --cluster URLS --size-mb N --json`: snapshot put/get MB/s
              through the JetStream store and a plain directory

A context longer than the model's max_position_embeddings (the shipped tiny model has 2,048) is
measured on a copy of the model directory whose config.json raises it (the weights and tokenizer
linked, not copied) and --ctx to match: the timing is what matters here, not the text. For a
model of a real size: build/bin/driftwood mkmodel --shape llama-3.2-1b --out /tmp/m1b, then --model /tmp/m1b.

Usage: PYTHONPATH=.deps/python tools/cluster-measure.py [--build build] [--backend cpu|cuda]
         [--model DIR] [--contexts 512,4096] [--variants snapshot,replay] [--reps 200] [--warmup 20] [--size-mb 128]
         [--lease-ms MS] [--only forwarding|failover|store] [--json]"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NATS_CLUSTER = os.path.join(ROOT, "tools", "nats-cluster.sh")
RUNNING = []  # every cluster started, stopped at exit


class Cluster:
    def __init__(self, args, d, model=None, ctx=0):
        self.dir, self.nodes = d, {}
        out = subprocess.run([NATS_CLUSTER, "start", os.path.join(d, "nats")], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit("the NATS cluster did not start:\n" + out.stderr)
        RUNNING.append(self)
        self.urls = out.stdout.strip().splitlines()[-1]
        cmd = [os.path.join(ROOT, args.build, "bin", "driftwood"), "serve", "--listen", "127.0.0.1:0", "--cluster",
               self.urls, "--backend", args.backend, "--max-tokens", "8192"]
        if model:
            cmd += ["--model", model]
        if ctx:
            cmd += ["--ctx", str(ctx)]
        if args.lease_ms:
            cmd += ["--lease-ms", str(args.lease_ms)]
        # n1 first (it makes the buckets and streams), then the other two together
        for group in (("n1",), ("n2", "n3")):
            for name in group:
                log = os.path.join(d, name + ".log")
                with open(log, "wb") as f:
                    proc = subprocess.Popen(cmd + ["--node", name, "--store", os.path.join(d, name)], stdout=f,
                                            stderr=subprocess.STDOUT)
                self.nodes[name] = {"proc": proc, "log": log}
            for name in group:
                self.wait_listening(name)

    def wait_listening(self, name):
        n = self.nodes[name]
        deadline = time.time() + 300
        while True:
            m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", open(n["log"], "rb").read())
            if m:
                n["url"] = f"http://127.0.0.1:{int(m.group(1))}"
                n["http"] = httpx.Client(base_url=n["url"], timeout=600)
                return
            if n["proc"].poll() is not None or time.time() > deadline:
                text = open(n["log"], errors="replace").read()[-3000:]
                self.stop()
                sys.exit(f"node {name} did not start: {text}")
            time.sleep(0.05)

    def http(self, name):
        return self.nodes[name]["http"]

    def kill(self, name):
        """SIGKILLs a node; returns the wall-clock time (the clock of the cluster-event lines) it died by."""
        p = self.nodes[name]["proc"]
        p.send_signal(signal.SIGKILL)
        p.wait()
        return time.time()

    def events(self, name):
        text = open(self.nodes[name]["log"], errors="replace").read()
        return [json.loads(m.group(1)) for m in re.finditer(r"cluster-event (\{.*\})", text)]

    def stop(self):
        for n in self.nodes.values():
            if "http" in n:
                n["http"].close()
            if n["proc"].poll() is None:
                n["proc"].send_signal(signal.SIGTERM)
                try:
                    n["proc"].wait(timeout=30)
                except subprocess.TimeoutExpired:
                    n["proc"].kill()
                    n["proc"].wait()
        subprocess.run([NATS_CLUSTER, "stop", os.path.join(self.dir, "nats")])
        if self in RUNNING:
            RUNNING.remove(self)


def new_actor(c, via="n1"):
    r = c.http(via).post("/v1/actors", json={"temperature": 0, "max_tokens": 1})
    r.raise_for_status()
    return r.json()["id"]


def say(c, node, actor, text, **kw):
    r = c.http(node).post(f"/v1/actors/{actor}/messages", json={"content": text, "max_tokens": 1, **kw})
    r.raise_for_status()
    return r


def pct(xs, q):
    s = sorted(xs)
    return s[int(q * (len(s) - 1))]


def summary(xs):
    return {"median_ms": statistics.median(xs), "p99_ms": pct(xs, 0.99), "n": len(xs)}


def forwarding(args, max_positions):
    with tempfile.TemporaryDirectory(prefix="cluster-measure-") as d:
        c = Cluster(args, d, args.model)
        try:
            samples = forwarding_samples(args, c, max_positions)
        finally:
            c.stop()
    out = {}
    for kind, s in samples.items():
        out[kind] = {"owner": summary(s["owner"]), "other": summary(s["other"])}
        out[kind]["overhead_median_ms"] = out[kind]["other"]["median_ms"] - out[kind]["owner"]["median_ms"]
    return out


def forwarding_samples(args, c, max_positions):
    samples = {k: {"owner": [], "other": []} for k in ("get", "turn")}
    actor = owner = other = None
    context = 0
    for i in range(args.warmup + args.reps):
        if actor is None or context > 0.7 * max_positions:  # a fresh actor before its context fills up
            actor = new_actor(c)
            r = say(c, "n1", actor, "Hello.")
            owner = r.headers["X-Driftwood-Node"]
            other = next(n for n in c.nodes if n != owner)
        order = (("owner", owner), ("other", other)) if i % 2 == 0 else (("other", other), ("owner", owner))
        for kind in ("get", "turn"):
            for role, node in order:
                t0 = time.perf_counter()
                if kind == "get":
                    r = c.http(node).get(f"/v1/actors/{actor}")
                    r.raise_for_status()
                else:
                    r = say(c, node, actor, "Next.")
                    context = r.json()["usage"]["context_tokens"]
                ms = (time.perf_counter() - t0) * 1e3
                served = r.headers.get("X-Driftwood-Node")
                if served != owner:
                    sys.exit(f"{kind} of {actor} sent to {node} was served by {served}, not its holder {owner}")
                if i >= args.warmup:
                    samples[kind][role].append(ms)
    return samples


def long_text(tokens):
    words = ("the sea and the mountains under a quiet sky where rivers run to distant towns and old "
             "stories wait for someone to tell them again ").split()
    return " ".join(words[i % len(words)] for i in range(int(tokens * 0.92)))


def first_token_through(c, nodes, actor, deadline):
    """Streams a turn through the given nodes in turn until one accepts it; returns (seconds to the
    first delta from now, seconds to the 200 response, node that served it, retries, the done event)."""
    t0 = time.perf_counter()
    retries = 0
    while True:
        node = nodes[retries % len(nodes)]
        try:
            with c.http(node).stream("POST", f"/v1/actors/{actor}/messages",
                                     json={"content": "And after that?", "max_tokens": 4, "stream": True}) as r:
                if r.status_code in (502, 503, 504) or (r.status_code == 409 and b"actor_busy" in r.read()):
                    raise httpx.TransportError(f"status {r.status_code}")
                if r.status_code != 200:
                    sys.exit(f"the turn after the kill: {r.status_code} {r.read()!r}")
                accepted = time.perf_counter() - t0
                first = None
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    ev = json.loads(line[6:])
                    if ev.get("type") == "error":
                        sys.exit(f"the turn after the kill failed: {ev}")
                    if first is None and ev.get("type") in ("delta", "done"):
                        first = time.perf_counter() - t0
                    if ev.get("type") == "done":
                        return first, accepted, r.headers.get("X-Driftwood-Node"), retries, ev
                sys.exit("the stream after the kill ended without a done event")
        except httpx.TransportError:
            retries += 1
            if time.time() > deadline:
                sys.exit(f"no node accepted the turn of {actor} within the deadline")
            time.sleep(0.02)


def failover_once(args, tokens, snapshot):
    with tempfile.TemporaryDirectory(prefix="cluster-measure-") as d, tempfile.TemporaryDirectory() as mdir:
        model, ctx = fit_context(args.model, tokens, mdir)
        c = Cluster(args, d, model, ctx)
        try:
            return failover_run(c, tokens, snapshot, ctx)
        finally:
            c.stop()


def failover_run(c, tokens, snapshot, ctx):
    actor = new_actor(c)
    context = 0
    for _ in range(4):  # tokenizers differ in words per token: top up towards the size asked for
        context = say(c, "n1", actor, long_text(tokens - context)).json()["usage"]["context_tokens"]
        if context >= 0.97 * tokens:
            break
    owner = c.http("n1").get(f"/v1/actors/{actor}").headers["X-Driftwood-Node"]
    if snapshot:
        c.http(owner).post(f"/v1/actors/{actor}/snapshot").raise_for_status()
    others = [n for n in c.nodes if n != owner]
    t_kill_wall = time.time()
    t0 = time.perf_counter()
    c.kill(owner)
    kill_to_request = time.perf_counter() - t0  # the kill itself (SIGKILL and wait for the process to end)
    ttft, accepted, served, retries, done = first_token_through(c, others, actor, time.time() + 600)
    claims = [e for n in others for e in c.events(n) if e["actor"] == actor and e["event"] == "claim"]
    out = {"context_tokens": context, "snapshot_before_kill": snapshot, "killed": owner,
           "served_by": served, "kill_to_first_token_ms": (kill_to_request + ttft) * 1e3,
           "request_accepted_ms": (kill_to_request + accepted) * 1e3, "retries": retries,
           "claim_after_kill_ms": (min(e["t"] for e in claims) - t_kill_wall) * 1e3 if claims else None,
           "wake_ms": done.get("wake_ms"), "ctx": ctx or None}
    return out


def fit_context(model, tokens, tmp):
    """(model dir, --ctx) that hold `tokens` and a reply: the model itself, or a copy of it whose
    max_position_embeddings is raised (weights and tokenizer linked)."""
    src = os.path.abspath(model or os.path.join(ROOT, "models", "driftwood-tiny"))
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    need = tokens + 512
    if need <= cfg["max_position_embeddings"]:
        return model, 0
    for name in os.listdir(src):
        if name != "config.json":
            os.symlink(os.path.join(src, name), os.path.join(tmp, name))
    cfg["max_position_embeddings"] = need
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f)
    return tmp, need


def store(args):
    with tempfile.TemporaryDirectory(prefix="cluster-measure-") as d:
        out = subprocess.run([NATS_CLUSTER, "start", os.path.join(d, "nats")], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit("the NATS cluster did not start:\n" + out.stderr)
        try:
            bench = subprocess.run([os.path.join(ROOT, args.build, "bin", "driftwood"), "bench", "store", "--cluster",
                                    out.stdout.strip().splitlines()[-1], "--size-mb", str(args.size_mb), "--json"],
                                   capture_output=True, text=True, timeout=1800)
        finally:
            subprocess.run([NATS_CLUSTER, "stop", os.path.join(d, "nats")])
    if bench.returncode != 0:
        sys.exit(f"driftwood bench store failed ({bench.returncode}):\n{bench.stderr}{bench.stdout}")
    return json.loads(bench.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("DW_BUILD", "build"))
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--model", default=None)
    ap.add_argument("--contexts", default="512,4096")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--variants", default="snapshot,replay",
                    help="failover with a snapshot just before the kill, and/or restoring by replaying the log")
    ap.add_argument("--size-mb", type=int, default=128)
    ap.add_argument("--lease-ms", type=int, default=0, help="passed to the nodes (default: theirs)")
    ap.add_argument("--only", choices=("forwarding", "failover", "store"), default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with open(os.path.join(os.path.abspath(args.model or os.path.join(ROOT, "models", "driftwood-tiny")),
                           "config.json")) as f:
        max_positions = json.load(f)["max_position_embeddings"]
    res = {"lease_ms": args.lease_ms or "node default"}
    if args.only in (None, "forwarding"):
        res["forwarding"] = forwarding(args, max_positions)
    if args.only in (None, "failover"):
        variants = args.variants.split(",")
        if set(variants) - {"snapshot", "replay"}:
            sys.exit("--variants: snapshot and/or replay")
        res["failover"] = [failover_once(args, int(n), v == "snapshot")
                           for n in args.contexts.split(",") for v in variants]
    if args.only in (None, "store"):
        res["store"] = store(args)
    if args.json:
        print(json.dumps(res))
        return
    for kind, f in res.get("forwarding", {}).items():
        what = "GET /v1/actors/ID" if kind == "get" else "1-token turn"
        print(f"forwarding, {what}: holder {f['owner']['median_ms']:.2f} ms median (p99 {f['owner']['p99_ms']:.2f}), "
              f"through another node {f['other']['median_ms']:.2f} ms (p99 {f['other']['p99_ms']:.2f}): "
              f"+{f['overhead_median_ms']:.2f} ms over {f['owner']['n']} pairs")
    for f in res.get("failover", []):
        claim = f"{f['claim_after_kill_ms']:.0f} ms" if f["claim_after_kill_ms"] is not None else "no claim event seen"
        print(f"failover at {f['context_tokens']} tokens ({'snapshot' if f['snapshot_before_kill'] else 'no snapshot'} "
              f"before the kill): first token {f['kill_to_first_token_ms']:.0f} ms after the kill of {f['killed']} "
              f"(claimed by {f['served_by']} {claim} after; request accepted at {f['request_accepted_ms']:.0f} ms, "
              f"{f['retries']} retries, wake {f['wake_ms'] or 0:.0f} ms)")
    if "store" in res:
        print("store:", json.dumps(res["store"]))


if __name__ == "__main__":
    try:
        main()
    finally:
        for c in list(RUNNING):
            c.stop()
