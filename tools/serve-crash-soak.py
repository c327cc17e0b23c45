#!/usr/bin/env python3
"""Crash soak for `driftwood serve`: conversations under load, the server killed with SIGKILL at a
random moment, restarted on the same store, many times. Checks after every restart that each
turn a client saw complete is there (the actor's turn count), and that every reply, before and
after each crash, is bit-identical to the one an uninterrupted server gives for the same turn
(computed first on a control server). Turns the server finished but whose reply the kill cut off
are allowed to exist (durable before acknowledged, never the reverse); lost or reordered ones
are errors.

Usage: PYTHONPATH=.deps/python tools/serve-crash-soak.py [--trials 50] [--conversations 6]
         [--turns 60] [--build build] [--idle-seconds 0.5]
Exit status 0 when every trial passed. (tests/server/test_hibernation.py runs a few kills.)"""
import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import httpx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SETTINGS = {"system": "You are a poet.", "temperature": 0.9, "top_p": 0.95, "seed": 11, "max_tokens": 10}


def start(args, store):
    log = tempfile.NamedTemporaryFile(prefix="soak-", suffix=".log", delete=False)
    proc = subprocess.Popen([os.path.join(ROOT, args.build, "bin", "driftwood"), "serve", "--listen", "127.0.0.1:0",
                             "--store", store, "--idle-seconds", str(args.idle_seconds)], stdout=log,
                            stderr=subprocess.STDOUT)
    RUNNING[:] = [proc]
    deadline = time.time() + 30
    while time.time() < deadline:
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", open(log.name, "rb").read())
        if m:
            return proc, f"http://127.0.0.1:{int(m.group(1))}", log.name
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    sys.exit("server did not start: " + open(log.name, errors="replace").read())


def message(i):
    return f"Turn {i}: tell me something new."


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--conversations", type=int, default=6)
    ap.add_argument("--turns", type=int, default=60, help="turns of each conversation computed on the control")
    ap.add_argument("--idle-seconds", type=float, default=0.5, help="so that crashes also hit hibernated actors")
    ap.add_argument("--build", default=os.environ.get("DW_BUILD", "build"))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    errors = []
    with tempfile.TemporaryDirectory() as control_store, tempfile.TemporaryDirectory() as store:
        # the truth: every conversation's replies on a server never interrupted
        proc, url, log = start(args, control_store)
        expected = []
        with httpx.Client(base_url=url, timeout=120) as c:
            for k in range(args.conversations):
                a = c.post("/v1/actors", json=SETTINGS).json()["id"]
                expected.append([c.post(f"/v1/actors/{a}/messages", json={"content": message(i)}).json()["output"]
                                 for i in range(1, args.turns + 1)])
        proc.send_signal(signal.SIGTERM), proc.wait(), os.unlink(log)

        proc, url, log = start(args, store)
        with httpx.Client(base_url=url, timeout=120) as c:
            actors = [c.post("/v1/actors", json=SETTINGS).json()["id"] for _ in range(args.conversations)]
        acked = [0] * args.conversations  # turns each client saw complete
        total_acked = 0
        for trial in range(1, args.trials + 1):
            stop = threading.Event()

            def client(k):
                nonlocal total_acked
                with httpx.Client(base_url=url, timeout=120) as c:
                    try:
                        n = c.get(f"/v1/actors/{actors[k]}").json()["turns"]
                    except httpx.HTTPError:
                        return
                    if n < acked[k]:
                        errors.append(f"trial {trial}: conversation {k}: {n} turns, {acked[k]} were acknowledged")
                    while not stop.is_set() and n < args.turns:
                        try:
                            r = c.post(f"/v1/actors/{actors[k]}/messages", json={"content": message(n + 1)})
                        except httpx.HTTPError:
                            return  # the kill
                        j = r.json()
                        if r.status_code != 200 or j["turn"] != n + 1:
                            errors.append(f"trial {trial}: conversation {k}: HTTP {r.status_code}, turn {j.get('turn')}, "
                                          f"expected {n + 1}")
                            return
                        if j["output"] != expected[k][n]:
                            errors.append(f"trial {trial}: conversation {k} turn {n + 1}: reply differs from the "
                                          "uninterrupted run")
                        n += 1
                        acked[k] = n
                        total_acked += 1
                        time.sleep(rnd.random() * args.idle_seconds * 2)  # sometimes long enough to hibernate

            threads = [threading.Thread(target=client, args=(k,)) for k in range(args.conversations)]
            for t in threads:
                t.start()
            time.sleep(rnd.uniform(0.2, 2.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            stop.set()
            for t in threads:
                t.join()
            os.unlink(log)
            proc, url, log = start(args, store)
            with httpx.Client(base_url=url, timeout=120) as c:
                for k, a in enumerate(actors):
                    n = c.get(f"/v1/actors/{a}").json()["turns"]
                    if n < acked[k]:
                        errors.append(f"trial {trial}: conversation {k}: {n} turns after restart, {acked[k]} acknowledged")
                    acked[k] = max(acked[k], n)
            print(f"trial {trial}/{args.trials}: {total_acked} turns acknowledged so far, {len(errors)} errors", flush=True)
        proc.send_signal(signal.SIGTERM), proc.wait(), os.unlink(log)
    for e in errors[:20]:
        print("error:", e)
    print(f"crash soak: {args.trials} kills, {total_acked} acknowledged turns, {len(errors)} errors")
    return 1 if errors else 0


RUNNING = []  # the server process of the moment, stopped whatever happens


def stop_running():
    for p in RUNNING:
        if p.poll() is None:
            p.kill()
            p.wait()


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_running()
