#!/usr/bin/env python3
"""Load generator for `driftwood serve`: N concurrent clients, each streaming requests one after
another for a number of rounds, over real HTTP (httpx, asyncio). Prints the aggregate generated
tokens per second, time to first token (p50, p99), errors; --json prints one JSON object instead.

Modes:
  chat       POST /v1/chat/completions, stream, stream_options.include_usage (stateless)
  actors     each client owns an actor (POST /v1/actors) and sends it --rounds turns
             (POST /v1/actors/ID/messages, stream): stateful conversations, which the server may
             hibernate and wake in between (see --pause)
  responses  each client continues its own /v1/responses chain (previous_response_id)

--procs P spreads the clients over P processes started together (their counts added, percentiles
over all requests): one Python process reading 64 streams on a small machine falls behind the
server, and its time to first token then measures the client (on the 2-core machine, one process
gave a TTFT p99 of 5 s where two gave 0.4 s; the server's own TTFT was under 100 ms).

Unless --raw, the server's GET /v1/stats is read before and after the run and the report adds
what the server saw in between ("server"): tokens it generated, its batched steps, decode rows a
step and the share of the wall time its steps ran (busy) — whether a shortfall is the server's or
the clients'.

Usage: tools/loadgen.py --url http://127.0.0.1:8080 [--key KEY] [-n 64] [--rounds 1] [--procs 1]
                        [--max-tokens 128] [--mode chat|actors|responses] [--pause S] [--json]
(PYTHONPATH must reach httpx: .deps/python here, .carry/python on the GPU machine.)"""
import argparse
import asyncio
import json
import subprocess
import sys
import time

import httpx


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Stats:
    def __init__(self):
        self.ttft, self.tokens, self.requests, self.errors, self.messages = [], 0, 0, 0, []

    def error(self, what):
        self.errors += 1
        if len(self.messages) < 5:
            self.messages.append(what)


async def sse(client, path, body, on_event):
    """POSTs body and calls on_event(json) for each data event; returns the time to the first
    text (seconds) or None."""
    t0 = time.perf_counter()
    first = None
    async with client.stream("POST", path, json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if on_event(ev) and first is None:
                first = time.perf_counter() - t0
    return first


async def client_chat(client, args, i, stats):
    for k in range(args.rounds):
        usage = {}

        def on(ev):
            if ev.get("usage"):
                usage.update(ev["usage"])
            if "error" in ev:
                raise RuntimeError(ev["error"]["message"])
            return any(c.get("delta", {}).get("content") for c in ev.get("choices", []))

        body = {"model": args.model, "messages": [{"role": "user", "content": f"{args.prompt} ({i}.{k})"}],
                "max_tokens": args.max_tokens, "temperature": args.temperature, "stream": True,
                "stream_options": {"include_usage": True}}
        try:
            ttft = await sse(client, "/v1/chat/completions", body, on)
            stats.requests += 1
            stats.tokens += usage.get("completion_tokens", 0)
            if ttft is not None:
                stats.ttft.append(ttft)
        except Exception as e:  # noqa: BLE001 - every failure counts as an error
            stats.error(str(e))
        if args.pause:
            await asyncio.sleep(args.pause)


async def client_actor(client, args, i, stats):
    try:
        r = await client.post("/v1/actors", json={"max_tokens": args.max_tokens, "temperature": args.temperature})
        r.raise_for_status()
        actor = r.json()["id"]
    except Exception as e:  # noqa: BLE001
        stats.error(f"create: {e}")
        return
    expected_turn = 0
    for k in range(args.rounds):
        done = {}

        def on(ev):
            if ev.get("type") == "error":
                raise RuntimeError(ev["error"]["message"])
            if ev.get("type") == "done":
                done.update(ev)
            return ev.get("type") == "delta" and ev.get("text")

        try:
            ttft = await sse(client, f"/v1/actors/{actor}/messages", {"content": f"{args.prompt} ({k})", "stream": True}, on)
            expected_turn += 1
            if done.get("turn") != expected_turn:  # a lost or reordered turn
                raise RuntimeError(f"actor {actor}: turn {done.get('turn')}, expected {expected_turn}")
            stats.requests += 1
            stats.tokens += done["usage"]["completion_tokens"]
            if ttft is not None:
                stats.ttft.append(ttft)
        except Exception as e:  # noqa: BLE001
            stats.error(str(e))
        if args.pause:
            await asyncio.sleep(args.pause)


async def client_responses(client, args, i, stats):
    prev = None
    for k in range(args.rounds):
        final = {}

        def on(ev):
            if ev.get("type") in ("response.completed", "response.incomplete"):
                final.update(ev["response"])
            if ev.get("type") == "response.failed":
                raise RuntimeError(str(ev["response"].get("error")))
            return ev.get("type") == "response.output_text.delta" and ev.get("delta")

        body = {"model": args.model, "input": f"{args.prompt} ({k})", "max_output_tokens": args.max_tokens,
                "temperature": args.temperature, "stream": True}
        if prev:
            body["previous_response_id"] = prev
        try:
            ttft = await sse(client, "/v1/responses", body, on)
            prev = final["id"]
            stats.requests += 1
            stats.tokens += final["usage"]["output_tokens"]
            if ttft is not None:
                stats.ttft.append(ttft)
        except Exception as e:  # noqa: BLE001
            stats.error(str(e))
        if args.pause:
            await asyncio.sleep(args.pause)


def server_stats(args):
    """The server's /v1/stats, or None when it cannot be read."""
    try:
        r = httpx.get(args.url + "/v1/stats", headers={"Authorization": f"Bearer {args.key}"} if args.key else {},
                      timeout=10)
        return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def server_delta(before, after, wall):
    """What the server did between two /v1/stats readings over wall seconds."""
    if not before or not after or wall <= 0:
        return None
    out = {"tokens": after["tokens_generated"] - before["tokens_generated"]}
    b0, b1 = before.get("batch"), after.get("batch")
    if b0 and b1:
        steps = b1["steps"] - b0["steps"]
        out.update({"steps": steps, "decode_rows": b1["decode_rows"] - b0["decode_rows"],
                    "prefill_rows": b1["prefill_rows"] - b0["prefill_rows"],
                    "decode_rows_per_step": round((b1["decode_rows"] - b0["decode_rows"]) / steps, 2) if steps else 0,
                    "busy": round((b1["busy_s"] - b0["busy_s"]) / wall, 3)})
    return out


async def main(args):
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    limits = httpx.Limits(max_connections=args.n + 4, max_keepalive_connections=args.n + 4)
    stats = Stats()
    run = {"chat": client_chat, "actors": client_actor, "responses": client_responses}[args.mode]
    before = None if args.raw else server_stats(args)
    async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=args.timeout, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(run(client, args, args.first + i, stats) for i in range(args.n)))
        wall = time.perf_counter() - t0
    if args.raw:  # for the parent of --procs
        print(json.dumps({"requests": stats.requests, "errors": stats.errors, "tokens": stats.tokens, "wall": wall,
                          "ttft": stats.ttft, "messages": stats.messages}))
        return 0
    return report(args, stats, wall, server_delta(before, server_stats(args), wall))


def run_procs(args):
    """Runs the clients in args.procs child processes at once and merges what they measured."""
    argv = [a for a in sys.argv[1:] if a != "--json"]
    cmds = []
    for p in range(args.procs):
        n = args.n // args.procs + (p < args.n % args.procs)
        cmds.append([sys.executable, __file__, *argv, "--procs", "1", "-n", str(n), "--raw", "--first", str(args.first + sum(
            args.n // args.procs + (q < args.n % args.procs) for q in range(p)))])
    before = server_stats(args)
    children = [subprocess.Popen(c, stdout=subprocess.PIPE) for c in cmds]
    stats, wall = Stats(), 0.0
    for ch in children:
        out, _ = ch.communicate()
        j = json.loads(out.decode().strip().splitlines()[-1])
        stats.requests += j["requests"]
        stats.errors += j["errors"]
        stats.tokens += j["tokens"]
        stats.ttft += j["ttft"]
        stats.messages += j["messages"][:5 - len(stats.messages)]
        wall = max(wall, j["wall"])
    return report(args, stats, wall, server_delta(before, server_stats(args), wall))


def report(args, stats, wall, server=None):
    p50, p99 = percentile(stats.ttft, 50), percentile(stats.ttft, 99)
    out = {"mode": args.mode, "clients": args.n, "procs": args.procs, "rounds": args.rounds, "requests": stats.requests,
           "errors": stats.errors, "tokens": stats.tokens, "wall_s": round(wall, 3),
           "tok_per_s": round(stats.tokens / wall, 1) if wall > 0 else 0,
           "ttft_p50_ms": round(p50 * 1e3, 1) if p50 is not None else None,
           "ttft_p99_ms": round(p99 * 1e3, 1) if p99 is not None else None, "error_samples": stats.messages,
           "server": server}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.mode}: {args.n} clients x {args.rounds} rounds: {stats.requests} requests, {stats.errors} errors, "
              f"{stats.tokens} tokens in {wall:.2f} s = {out['tok_per_s']} tok/s; "
              f"TTFT p50 {out['ttft_p50_ms']} ms, p99 {out['ttft_p99_ms']} ms")
        if server:
            print(f"  server: {server}")
        for m in stats.messages:
            print("  error:", m, file=sys.stderr)
    return 1 if stats.errors else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--key", default=None)
    ap.add_argument("--model", default="default")
    ap.add_argument("-n", type=int, default=16, help="concurrent clients")
    ap.add_argument("--rounds", type=int, default=1, help="requests per client, one after another")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--prompt", default="Tell me a long story about the sea.")
    ap.add_argument("--mode", choices=("chat", "actors", "responses"), default="chat")
    ap.add_argument("--pause", type=float, default=0.0, help="seconds a client waits between its requests")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--procs", type=int, default=1, help="client processes the clients are spread over")
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)  # the first client's number
    ap.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)  # a child of --procs
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.exit(run_procs(args) if args.procs > 1 else asyncio.run(main(args)))
