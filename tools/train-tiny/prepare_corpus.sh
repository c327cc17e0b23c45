#!/bin/sh
# Fetches the public-domain English texts from Debian packages and writes the training documents
# (build/train-tiny/docs.jsonl). Run as root or as a user who may run apt-get download. See README.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${WORK:-$root/build/train-tiny}
mkdir -p "$work/debs"
cd "$work/debs"

# Versions pinned to what the shipped model was trained on (Debian 12 "bookworm").
pkgs="bible-kjv=4.38 bible-kjv-text=4.38 dict-devil=1.0-13.1 jargon-text=4.4.7-4.1"
for p in $pkgs; do
    name=${p%%=*}
    ls "${name}"_*.deb >/dev/null 2>&1 || apt-get download "$p"
done
for f in *.deb; do
    d=x/${f%%_*}
    [ -d "$d" ] || { mkdir -p x && dpkg -x "$f" "$d"; }
done
sha256sum *.deb > "$work/debs.sha256"

# The KJV text ships compressed for the bible(1) program; its -f switch prints one verse per line.
x/bible-kjv/usr/bin/bible -f -d x/bible-kjv-text/usr/lib/bible.data "gen1:1-rev22:21" > "$work/kjv.txt"
gzip -dc x/dict-devil/usr/share/dictd/devil.dict.dz > "$work/devil.dict"
gzip -dc x/jargon-text/usr/share/doc/jargon-text/jargon.txt.gz > "$work/jargon.txt"

python3 "$here/prepare_corpus.py" "$work/kjv.txt" "$work/devil.dict" \
    x/dict-devil/usr/share/dictd/devil.index "$work/jargon.txt" "$work/docs.jsonl"
sha256sum "$work/docs.jsonl"
