"""tools/loadgen.py against a server: every mode completes without errors and reports its numbers,
what the server saw in between (its /v1/stats: tokens and batched steps), and turn numbers come back
in order (the actors mode checks each reply's turn)."""
import json
import os
import subprocess
import sys

from conftest import KEY_A, ROOT


def test_loadgen_modes(server):
    for mode in ("chat", "actors", "responses"):
        out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "loadgen.py"), "--url", server.url, "--key",
                              KEY_A, "-n", "4", "--rounds", "2", "--max-tokens", "8", "--mode", mode, "--json"],
                             capture_output=True, text=True, timeout=120, env=os.environ)
        assert out.returncode == 0, out.stderr + out.stdout
        r = json.loads(out.stdout)
        assert r["errors"] == 0 and r["requests"] == 8 and r["tokens"] > 0 and r["ttft_p50_ms"] > 0
        srv = r["server"]
        assert srv["tokens"] >= r["tokens"] and srv["steps"] > 0 and srv["decode_rows"] > 0, srv
        assert 0 < srv["busy"] <= 1.0 and srv["decode_rows_per_step"] > 0, srv
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "loadgen.py"), "--url", server.url, "--key",
                          "sk-not-a-key-0000000000", "-n", "2", "--max-tokens", "4", "--json"],
                         capture_output=True, text=True, timeout=60, env=os.environ)
    assert bad.returncode == 1 and json.loads(bad.stdout)["errors"] == 2


def test_loadgen_procs_add_up(server):
    """--procs spreads the clients over processes: the same requests and tokens as one process
    (greedy, and each client keeps its own number), and every request an error for a bad key."""
    def run(procs, key=KEY_A):
        out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "loadgen.py"), "--url", server.url, "--key",
                              key, "-n", "4", "--rounds", "2", "--max-tokens", "8", "--procs", str(procs), "--json"],
                             capture_output=True, text=True, timeout=120, env=os.environ)
        return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])
    rc1, one = run(1)
    rc3, three = run(3)
    assert rc1 == 0 and rc3 == 0 and three["procs"] == 3
    assert three["requests"] == one["requests"] == 8 and three["tokens"] == one["tokens"] and three["errors"] == 0
    rc, bad = run(2, "sk-not-a-key-0000000000")
    assert rc == 1 and bad["errors"] == 8 and bad["requests"] == 0
