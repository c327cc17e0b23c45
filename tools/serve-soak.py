#!/usr/bin/env python3
"""Soak for `driftwood serve`: many conversations (1,000 by default), most of them hibernated at any
moment (a small --idle-seconds and a --memory-budget), and clients cycling through them for
--minutes over real HTTP (asyncio + httpx), streaming and not.

Every reply is checked against the reply an uninterrupted conversation gives for the same turn:
conversations follow one of --scripts scripts (a system prompt, a seed, the same user message
for turn N), and a control server that never hibernates plays each script once, turn by turn,
as the soak needs it. A turn whose number (the server's `turn`) or text differs is an error, as
is any HTTP or stream error; a streamed reply's deltas must add up to its final text; after
some turns and at the end every conversation's turn count (GET /v1/actors/ID) must equal the
turns its client saw complete. The server's resident memory (VmRSS) and open files
(/proc/PID/fd) are sampled every --sample-seconds; the summary gives min/max and the max of
each tenth of the run, to show whether they plateau.

Usage: PYTHONPATH=.deps/python tools/serve-soak.py [--minutes 10] [--conversations 1000]
         [--clients 16] [--idle-seconds 2] [--memory-budget BYTES] [--build build] [--json]
Exit status 0 when there were no errors."""
import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
LIVE = []  # every server started, killed at exit if still running


def message(n):
    return f"Turn {n}: tell me something new."


def script_settings(s, max_tokens):
    return {"system": f"You are poet number {s}.", "temperature": 0.9, "top_p": 0.95, "seed": 1000 + s,
            "max_tokens": max_tokens}


async def start_server(args, store, extra):
    log = tempfile.NamedTemporaryFile(prefix="serve-soak-", suffix=".log", delete=False)
    cmd = [os.path.join(ROOT, args.build, "bin", "driftwood"), "serve", "--listen", "127.0.0.1:0", "--store", store,
           "--max-streams", str(args.clients + 8), *extra]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    LIVE.append(proc)
    deadline = time.time() + 60
    while time.time() < deadline:
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", open(log.name, "rb").read())
        if m:
            return proc, f"http://127.0.0.1:{int(m.group(1))}", log.name
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.05)
    sys.exit("server did not start: " + open(log.name, errors="replace").read())


class Control:
    """Each script's replies on a server that never hibernates, computed turn by turn on demand."""

    def __init__(self, client, args):
        self.client, self.args = client, args
        self.actors, self.replies, self.locks = {}, {}, {}

    async def expected(self, s, n):
        lock = self.locks.setdefault(s, asyncio.Lock())
        async with lock:
            if s not in self.actors:
                r = await self.client.post("/v1/actors", json=script_settings(s, self.args.max_tokens))
                r.raise_for_status()
                self.actors[s], self.replies[s] = r.json()["id"], []
            while len(self.replies[s]) < n:
                k = len(self.replies[s]) + 1
                r = await self.client.post(f"/v1/actors/{self.actors[s]}/messages", json={"content": message(k)})
                r.raise_for_status()
                j = r.json()
                if j["turn"] != k:
                    raise RuntimeError(f"control script {s}: turn {j['turn']}, expected {k}")
                self.replies[s].append(j["output"])
            return self.replies[s][n - 1]


class Soak:
    def __init__(self, args):
        self.args = args
        self.errors, self.error_samples = 0, []
        self.turns = self.streamed = self.state_checks = self.created = self.retired = 0
        self.samples = []  # (t, rss_kb, fds, awake, actors)

    def error(self, what):
        self.errors += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(what)
        print("error:", what, file=sys.stderr, flush=True)


async def turn(soak, client, control, conv):
    """One turn on conversation conv = {id, script, acked}; checks it. Returns True when it counted."""
    args = soak.args
    n = conv["acked"] + 1
    want = await control.expected(conv["script"], n)
    path = f"/v1/actors/{conv['id']}/messages"
    if random.random() < args.stream_share:
        pieces, done = [], {}
        async with client.stream("POST", path, json={"content": message(n), "stream": True}) as r:
            if r.status_code != 200:
                raise RuntimeError(f"{conv['id']} turn {n}: HTTP {r.status_code}: {(await r.aread())[:200]!r}")
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                ev = json.loads(line[6:])
                if ev.get("type") == "error":
                    raise RuntimeError(f"{conv['id']} turn {n}: stream error {ev['error']}")
                if ev.get("type") == "delta":
                    pieces.append(ev["text"])
                elif ev.get("type") == "done":
                    done = ev
        if not done:
            raise RuntimeError(f"{conv['id']} turn {n}: the stream ended without its done event")
        if "".join(pieces) != done["output"]:
            raise RuntimeError(f"{conv['id']} turn {n}: the streamed deltas differ from the final text")
        j = done
        soak.streamed += 1
    else:
        r = await client.post(path, json={"content": message(n)})
        if r.status_code != 200:
            raise RuntimeError(f"{conv['id']} turn {n}: HTTP {r.status_code}: {r.text[:200]}")
        j = r.json()
    if j["turn"] != n:
        raise RuntimeError(f"{conv['id']} turn {n}: the server says turn {j['turn']} (lost or reordered)")
    conv["acked"] = n
    if j["output"] != want:
        raise RuntimeError(f"{conv['id']} turn {n}: the reply differs from the uninterrupted conversation's: "
                           f"{j['output'][:60]!r} vs {want[:60]!r}")
    soak.turns += 1
    if random.random() < args.state_share:
        st = (await client.get(f"/v1/actors/{conv['id']}")).json()
        soak.state_checks += 1
        if st.get("turns") != n:
            raise RuntimeError(f"{conv['id']}: state says {st.get('turns')} turns, {n} completed")


async def new_conversation(soak, client, k):
    s = k % soak.args.scripts
    r = await client.post("/v1/actors", json=script_settings(s, soak.args.max_tokens))
    r.raise_for_status()
    soak.created += 1
    return {"id": r.json()["id"], "script": s, "acked": 0}


async def client_loop(soak, client, control, convs, free, deadline):
    args = soak.args
    while time.monotonic() < deadline:
        k = free.pop(random.randrange(len(free)))
        conv = convs[k]
        try:
            if conv["acked"] >= args.max_turns:  # the context would fill: a new conversation takes its place
                r = await client.delete(f"/v1/actors/{conv['id']}")
                if r.status_code != 200:
                    raise RuntimeError(f"delete {conv['id']}: HTTP {r.status_code}")
                soak.retired += 1
                convs[k] = conv = await new_conversation(soak, client, k)
            await turn(soak, client, control, conv)
        except Exception as e:  # noqa: BLE001 - every failure is an error of the soak
            soak.error(f"{type(e).__name__}: {e}")
        free.append(k)


def proc_sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def sampler(soak, client, pid, t0, deadline):
    last_print = 0.0
    while time.monotonic() < deadline:
        rss, fds = proc_sample(pid)
        try:
            st = (await client.get("/v1/stats")).json()
        except httpx.HTTPError as e:
            soak.error(f"stats: {e}")
            st = {}
        t = time.monotonic() - t0
        soak.samples.append((t, rss, fds, st.get("awake"), st.get("actors")))
        if t - last_print >= soak.args.progress_seconds:
            last_print = t
            print(f"[{t:6.0f} s] {soak.turns} turns ({soak.turns / max(t, 1e-9):.1f}/s), {soak.errors} errors, "
                  f"awake {st.get('awake')}/{st.get('actors')}, hibernations {st.get('hibernations')}, "
                  f"wakes {st.get('wakes')}, RSS {rss / 1024:.1f} MiB, fds {fds}", flush=True)
        await asyncio.sleep(soak.args.sample_seconds)


def tenths(samples, idx, t_end):
    out = []
    for i in range(10):
        lo, hi = t_end * i / 10, t_end * (i + 1) / 10
        vals = [s[idx] for s in samples if lo <= s[0] < hi or (i == 9 and s[0] >= hi)]
        out.append(max(vals) if vals else None)
    return out


async def main(args):
    random.seed(args.seed)
    with tempfile.TemporaryDirectory() as control_store, tempfile.TemporaryDirectory() as store:
        cproc, curl, clog = await start_server(args, control_store, ["--idle-seconds", "1000000"])
        extra = ["--idle-seconds", str(args.idle_seconds)]
        if args.memory_budget:
            extra += ["--memory-budget", str(args.memory_budget)]
        proc, url, log = await start_server(args, store, extra)
        soak = Soak(args)
        limits = httpx.Limits(max_connections=args.clients + 8, max_keepalive_connections=args.clients + 8)
        async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client, \
                httpx.AsyncClient(base_url=curl, timeout=args.timeout) as cclient:
            control = Control(cclient, args)
            t_create = time.monotonic()
            sem = asyncio.Semaphore(8)

            async def create(k):
                async with sem:
                    return await new_conversation(soak, client, k)

            convs = await asyncio.gather(*(create(k) for k in range(args.conversations)))
            create_s = time.monotonic() - t_create
            print(f"{len(convs)} conversations created in {create_s:.1f} s; soaking for {args.minutes} min with "
                  f"{args.clients} clients", flush=True)
            free = list(range(len(convs)))
            t0 = time.monotonic()
            deadline = t0 + args.minutes * 60
            await asyncio.gather(sampler(soak, client, proc.pid, t0, deadline),
                                 *(client_loop(soak, client, control, convs, free, deadline) for _ in range(args.clients)))
            wall = time.monotonic() - t0
            rss, fds = proc_sample(proc.pid)
            soak.samples.append((wall, rss, fds, None, None))
            # every conversation: exactly the turns its client saw complete
            lost = 0
            for conv in convs:
                st = (await client.get(f"/v1/actors/{conv['id']}")).json()
                if st.get("turns") != conv["acked"]:
                    lost += 1
                    soak.error(f"end: {conv['id']}: {st.get('turns')} turns, {conv['acked']} completed")
            stats = (await client.get("/v1/stats")).json()
            if stats.get("turns_failed") or stats.get("replay_mismatches"):
                soak.error(f"server stats: {stats.get('turns_failed')} failed turns, "
                           f"{stats.get('replay_mismatches')} replay mismatches")
        proc.send_signal(signal.SIGTERM), proc.wait()
        cproc.send_signal(signal.SIGTERM), cproc.wait()
        os.unlink(log), os.unlink(clog)
    rss_all = [s[1] for s in soak.samples]
    fds_all = [s[2] for s in soak.samples]
    awake = sorted(s[3] for s in soak.samples if s[3] is not None)
    touched = sum(1 for c in convs if c["acked"] > 0)
    out = {"minutes": args.minutes, "conversations": args.conversations, "clients": args.clients,
           "idle_seconds": args.idle_seconds, "memory_budget": args.memory_budget, "create_s": round(create_s, 1),
           "wall_s": round(wall, 1), "turns": soak.turns, "turns_per_s": round(soak.turns / wall, 2),
           "streamed_turns": soak.streamed, "state_checks": soak.state_checks, "conversations_touched": touched,
           "conversations_retired": soak.retired, "errors": soak.errors, "lost_or_mismatched_at_end": lost,
           "awake_median": awake[len(awake) // 2] if awake else None, "awake_max": awake[-1] if awake else None,
           "hibernations": stats.get("hibernations"), "wakes": stats.get("wakes"),
           "wake_ms_avg": round(stats.get("wake_ms_avg", 0), 2), "hibernate_ms_avg": round(stats.get("hibernate_ms_avg", 0), 2),
           "durable_ms_avg": round(stats.get("durable_ms_avg", 0), 3),
           "rss_mib_min": round(min(rss_all) / 1024, 1), "rss_mib_max": round(max(rss_all) / 1024, 1),
           "rss_mib_max_by_tenth": [round(v / 1024, 1) if v else None for v in tenths(soak.samples, 1, wall)],
           "fds_min": min(fds_all), "fds_max": max(fds_all), "fds_max_by_tenth": tenths(soak.samples, 2, wall),
           "samples": len(soak.samples), "error_samples": soak.error_samples}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"soak: {out['turns']} turns in {out['wall_s']} s ({out['turns_per_s']}/s) over {touched} of "
              f"{args.conversations} conversations ({out['conversations_retired']} retired at {args.max_turns} turns), "
              f"{soak.errors} errors; awake median {out['awake_median']} max {out['awake_max']}; "
              f"{out['hibernations']} hibernations, {out['wakes']} wakes (avg {out['wake_ms_avg']} ms)")
        print(f"  RSS {out['rss_mib_min']}-{out['rss_mib_max']} MiB, max by tenth {out['rss_mib_max_by_tenth']}")
        print(f"  open files {out['fds_min']}-{out['fds_max']}, max by tenth {out['fds_max_by_tenth']}")
    return 1 if soak.errors else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--conversations", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--scripts", type=int, default=8, help="distinct conversation scripts (system prompt, seed)")
    ap.add_argument("--max-tokens", type=int, default=8, help="tokens per reply")
    ap.add_argument("--max-turns", type=int, default=40, help="turns after which a conversation is replaced")
    ap.add_argument("--idle-seconds", type=float, default=2)
    ap.add_argument("--memory-budget", type=int, default=0, help="bytes (0: the server's default)")
    ap.add_argument("--stream-share", type=float, default=0.5, help="share of turns streamed")
    ap.add_argument("--state-share", type=float, default=0.1, help="share of turns followed by a state check")
    ap.add_argument("--sample-seconds", type=float, default=3)
    ap.add_argument("--progress-seconds", type=float, default=30)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--build", default=os.environ.get("DW_BUILD", "build"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    try:
        sys.exit(asyncio.run(main(ap.parse_args())))
    finally:
        for p in LIVE:
            if p.poll() is None:
                p.kill()
                p.wait()
