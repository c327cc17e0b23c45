#!/usr/bin/env python3
"""Measures what hibernation and durability cost in `driftwood serve` (numbers for
docs/PERFORMANCE.md), on real server processes:

  durability  turns on one actor with the turn log fsync'd (the default) and with --no-fsync:
              the log write's own time per turn (durable_ms) and the turn's wall time
  wake-up     an actor with a long context (--context tokens) is hibernated; the time to the
              first token of its next message (restore the snapshot + prefill the new message)
              against re-prefilling the whole conversation on a fresh actor (what a stateless
              server does), and against waking after a SIGKILL (snapshot + log replay)

A context longer than the model's max_position_embeddings (the shipped tiny model has 2,048) is
measured on a copy of the model directory whose config.json raises it to fit (the weights and
tokenizer linked, not copied): the timing is what matters here, not the text.

Usage: PYTHONPATH=.deps/python tools/serve-measure.py [--build build] [--backend cpu|cuda]
         [--model DIR] [--context 4096] [--turns 40] [--only durability|wakeup] [--json]"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
LIVE = []  # every server started, killed at exit if still running


class Server:
    def __init__(self, args, store, extra=()):
        cmd = [os.path.join(ROOT, args.build, "bin", "driftwood"), "serve", "--listen", "127.0.0.1:0", "--store", store,
               "--backend", args.backend, "--max-tokens", "8192", *extra]
        if args.model:
            cmd += ["--model", args.model]
        if args.ctx:
            cmd += ["--ctx", str(args.ctx)]
        self.log = tempfile.NamedTemporaryFile(prefix="serve-measure-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        LIVE.append(self.proc)
        deadline = time.time() + 120
        while time.time() < deadline:
            m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", open(self.log.name, "rb").read())
            if m:
                self.url = f"http://127.0.0.1:{int(m.group(1))}"
                self.http = httpx.Client(base_url=self.url, timeout=600)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        sys.exit("server did not start: " + open(self.log.name, errors="replace").read())

    def stop(self, sig=signal.SIGTERM):
        self.http.close()
        self.proc.send_signal(sig)
        self.proc.wait()
        os.unlink(self.log.name)


def say(s, actor, text, **kw):
    r = s.http.post(f"/v1/actors/{actor}/messages", json={"content": text, **kw})
    r.raise_for_status()
    return r.json()


def durability(args, fsync):
    with tempfile.TemporaryDirectory() as d:
        s = Server(args, d, [] if fsync else ["--no-fsync"])
        actor = s.http.post("/v1/actors", json={"max_tokens": 8}).json()["id"]
        say(s, actor, "warm up")
        durable, wall = [], []
        for i in range(args.turns):
            t0 = time.perf_counter()
            r = say(s, actor, f"Turn {i}.", max_tokens=8)
            wall.append((time.perf_counter() - t0) * 1e3)
            durable.append(r["durable_ms"])
        s.stop()
    return {"fsync": fsync, "turns": args.turns, "durable_ms_median": statistics.median(durable),
            "durable_ms_p90": sorted(durable)[int(0.9 * (len(durable) - 1))], "turn_ms_median": statistics.median(wall)}


def long_text(tokens):
    words = ("the sea and the mountains under a quiet sky where rivers run to distant towns and old "
             "stories wait for someone to tell them again ").split()
    return " ".join(words[i % len(words)] for i in range(int(tokens * 0.92)))


def wakeup(args):
    out = {}
    with tempfile.TemporaryDirectory() as d:
        s = Server(args, d)
        text = long_text(args.context)
        actor = s.http.post("/v1/actors", json={"max_tokens": 1}).json()["id"]
        first = say(s, actor, text, max_tokens=1)
        out["context_tokens"] = first["usage"]["context_tokens"]
        # hibernated, then the next message: restore + prefill of the new message only
        wakes = []
        for i in range(args.repeats):
            s.http.post(f"/v1/actors/{actor}/hibernate").raise_for_status()
            t0 = time.perf_counter()
            r = say(s, actor, f"And then? ({i})", max_tokens=1)
            wakes.append({"ttft_ms": (time.perf_counter() - t0) * 1e3, "wake_ms": r["wake_ms"],
                          "cached": r["usage"]["cached_tokens"], "prefilled": r["usage"]["prompt_tokens"] - r["usage"]["cached_tokens"]})
        out["wake_ttft_ms_median"] = statistics.median(w["ttft_ms"] for w in wakes)
        out["wake_restore_ms_median"] = statistics.median(w["wake_ms"] for w in wakes)
        out["wake_prefilled_tokens"] = wakes[-1]["prefilled"]
        # the same conversation re-prefilled from scratch on a fresh actor (a stateless server's cost)
        history = [{"role": "user", "content": text}, {"role": "assistant", "content": first["output"]}]
        pre = []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            r = s.http.post("/v1/chat/completions", json={"model": "default", "max_tokens": 1, "messages": history + [
                {"role": "user", "content": f"And then? ({i})"}]})
            r.raise_for_status()
            pre.append((time.perf_counter() - t0) * 1e3)
            out["reprefill_tokens"] = r.json()["usage"]["prompt_tokens"]
        out["reprefill_ttft_ms_median"] = statistics.median(pre)
        # after a SIGKILL: the newest snapshot and the log's turns since it, replayed
        say(s, actor, "One more.", max_tokens=1)
        s.stop(signal.SIGKILL)
        s = Server(args, d)
        t0 = time.perf_counter()
        r = say(s, actor, "After the crash.", max_tokens=1)
        out["crash_wake_ttft_ms"] = (time.perf_counter() - t0) * 1e3
        out["crash_wake_restore_ms"] = r["wake_ms"]
        out["crash_replayed_turns"] = s.http.get("/v1/stats").json()["replayed_turns"]
        snap = [f for f in os.listdir(os.path.join(d, "actors", actor)) if f.endswith(".dwa")]
        out["snapshot_bytes"] = os.path.getsize(os.path.join(d, "actors", actor, snap[0])) if snap else None
        s.stop()
    return out


def fit_context(args, tmp):
    """Points args.model at a copy of the model whose max_position_embeddings holds args.context
    tokens and a reply, and sets args.ctx, when the model's own is too short."""
    src = os.path.abspath(args.model or os.path.join(ROOT, "models", "driftwood-tiny"))
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    need = args.context + 512
    if not args.ctx:
        args.ctx = need if need > min(cfg["max_position_embeddings"], 8192) else 0
    if args.ctx <= cfg["max_position_embeddings"]:
        return None
    for name in os.listdir(src):
        if name != "config.json":
            os.symlink(os.path.join(src, name), os.path.join(tmp, name))
    cfg["max_position_embeddings"] = args.ctx
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f)
    args.model = tmp
    return args.ctx


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("DW_BUILD", "build"))
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--model", default=None)
    ap.add_argument("--ctx", type=int, default=0)
    ap.add_argument("--context", type=int, default=4096, help="tokens of conversation before hibernating")
    ap.add_argument("--turns", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", choices=("durability", "wakeup"), default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = {}
    if args.only != "wakeup":
        res["durability"] = [durability(args, True), durability(args, False)]
    if args.only != "durability":
        with tempfile.TemporaryDirectory() as tmp:
            raised = fit_context(args, tmp)
            res["wakeup"] = wakeup(args)
            res["wakeup"]["ctx"] = args.ctx
            res["wakeup"]["max_positions_raised_to"] = raised
    if args.json:
        print(json.dumps(res))
        return
    for d in res.get("durability", []):
        print(f"durability ({'fsync' if d['fsync'] else 'no fsync'}): log write {d['durable_ms_median']:.2f} ms median "
              f"(p90 {d['durable_ms_p90']:.2f}), turn {d['turn_ms_median']:.1f} ms median over {d['turns']} turns")
    w = res.get("wakeup")
    if not w:
        return
    print(f"wake-up at {w['context_tokens']} tokens of context: first token {w['wake_ttft_ms_median']:.1f} ms "
          f"(restore {w['wake_restore_ms_median']:.1f} ms, {w['wake_prefilled_tokens']} new tokens prefilled) vs "
          f"re-prefilling {w['reprefill_tokens']} tokens {w['reprefill_ttft_ms_median']:.1f} ms; after SIGKILL "
          f"{w['crash_wake_ttft_ms']:.1f} ms (restore + {w['crash_replayed_turns']} replayed turn(s) "
          f"{w['crash_wake_restore_ms']:.1f} ms); snapshot {w['snapshot_bytes']} bytes")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in LIVE:
            if p.poll() is None:
                p.kill()
                p.wait()
