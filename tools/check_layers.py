#!/usr/bin/env python3
"""The guard of the house: checks every #include in src/ and include/ against the layer table
in docs/DESIGN.md ("Layers") and the rules stated under it:

  1. a file in src/F/ may include "X/..." only when X == F or X is in F's row of the table
     (every layer may include the public headers, "driftwood/...");
  2. outside src/backend/, the only backend header that may be included is backend/backend.h;
     src/backend/cpu/ and src/backend/cuda/ are private to their backend and never include
     each other;
  3. a header named *_impl.h may be included only from its own folder;
  4. the public headers (include/driftwood/) include only each other;
  5. the HTTP library's header (<microhttpd.h>) and the NATS client's (<nats/nats.h>) are included
     only under src/server/: the server layer is the one place that speaks HTTP and NATS.

Usage: tools/check_layers.py [--root DIR] [--count]
Prints each violation (file:line: what and which rule), then one closing line
"layers: 1 passed, 0 failed" (or "0 passed, 1 failed"), or with --count only the number of
violations. Exits 1 when there is any violation.
"""
import argparse
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
SYSTEM_INCLUDE = re.compile(r'^\s*#\s*include\s+<([^>]+)>')
SERVER_ONLY = {"microhttpd.h", "nats/nats.h"}  # rule 5
SOURCES = (".c", ".h", ".cu", ".cuh", ".inc")


def read_table(design_path):
    """The layer table: {folder: set of folders it may include}."""
    rows = {}
    in_table = False
    with open(design_path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("| layer (folder under src/)"):
                in_table = True
                continue
            if not in_table:
                continue
            if not line.startswith("|"):
                if rows:
                    break
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != 2 or cells[0].startswith("---"):
                continue
            folder = cells[0].strip("`")
            allowed = set() if cells[1] == "-" else {c.strip("`") for c in cells[1].split()}
            rows[folder] = allowed
    if not rows:
        sys.exit(f"check_layers: no layer table found in {design_path}")
    return rows


def files_under(root, top):
    for dirpath, _, names in os.walk(os.path.join(root, top)):
        for name in sorted(names):
            if name.endswith(SOURCES):
                yield os.path.relpath(os.path.join(dirpath, name), root)


def includes(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if m:
                yield number, m.group(1)


def check_source(rel, target, table):
    """A violation message for one include of a file under src/, or None."""
    parts = rel.split("/")  # src/F/...
    folder = parts[1]
    sub = parts[2] if folder == "backend" and len(parts) > 3 else None
    if "/" not in target:
        return None  # a neighbour in the same folder
    top = target.split("/")[0]
    if top == "driftwood":
        return None
    if folder not in table:
        return f"folder src/{folder}/ is not in docs/DESIGN.md's layer table"
    if top != folder and top not in table[folder]:
        return f'includes "{target}": src/{folder}/ may not include src/{top}/ (rule 1)'
    if top == "backend" and folder != "backend" and target != "backend/backend.h":
        return f'includes "{target}": outside src/backend/ only backend/backend.h may be included (rule 2)'
    if top == "backend" and folder == "backend":
        tparts = target.split("/")
        tsub = tparts[1] if len(tparts) > 2 else None
        if tsub is not None and tsub != sub:
            return f'includes "{target}": src/backend/{tsub}/ is private to its backend (rule 2)'
    if target.endswith("_impl.h"):
        header_dir = os.path.dirname(target)
        own_dir = "/".join(parts[1:-1])
        if header_dir != own_dir:
            return f'includes "{target}": an _impl.h header is private to src/{header_dir}/ (rule 3)'
    return None


def server_only_includes(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            m = SYSTEM_INCLUDE.match(line)
            if m and m.group(1) in SERVER_ONLY:
                yield number, m.group(1)


def violations(root, table):
    found = []
    for top in ("src", "include"):
        for rel in files_under(root, top):
            if rel.startswith("src/server/"):
                continue
            for number, target in server_only_includes(root, rel):
                found.append(f"{rel}:{number}: includes <{target}>: only src/server/ speaks HTTP (rule 5)")
    for rel in files_under(root, "src"):
        for number, target in includes(root, rel):
            why = check_source(rel, target, table)
            if why:
                found.append(f"{rel}:{number}: {why}")
    for rel in files_under(root, "include"):
        for number, target in includes(root, rel):
            if not target.startswith("driftwood/"):
                found.append(f'{rel}:{number}: includes "{target}": a public header includes only driftwood/ (rule 4)')
    return found


def main():
    ap = argparse.ArgumentParser(description="check includes against docs/DESIGN.md's layers")
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--design", help="the design file whose table to use (default: ROOT/docs/DESIGN.md)")
    ap.add_argument("--count", action="store_true", help="print only the number of violations")
    args = ap.parse_args()
    table = read_table(args.design or os.path.join(args.root, "docs", "DESIGN.md"))
    found = violations(args.root, table)
    if args.count:
        print(len(found))
    else:
        for v in found:
            print(v)
        print(f"layers: {0 if found else 1} passed, {1 if found else 0} failed")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
