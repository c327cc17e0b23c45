#!/usr/bin/env python3
# Turns the three public-domain Debian texts (KJV Bible, The Devil's Dictionary, the Jargon File)
# into one JSON-lines file of documents for tokenizer and model training. See README.md beside this.
"""Usage: prepare_corpus.py KJV.txt DEVIL.dict DEVIL.index JARGON.txt OUT.jsonl

KJV.txt      output of `bible -f gen1:1-rev22:21` (one verse per line, "Ge1:1 text")
DEVIL.*      dictd files of dict-devil (plain, i.e. the .dict.dz gunzipped, and the .index)
JARGON.txt   jargon.txt of jargon-text (gunzipped)

Each output line is {"source", "title", "text", "entries"?}; "entries" (Bible chapters only) lists
(reference, verse text) pairs and the dictionary documents carry "headword" and "definition", both
used to build chat-format training conversations. Everything is deterministic.
"""
import json
import re
import sys

BOOKS = [
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth",
    "1 Samuel", "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra",
    "Nehemiah", "Esther", "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon", "Isaiah",
    "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos", "Obadiah", "Jonah",
    "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah", "Malachi", "Matthew", "Mark",
    "Luke", "John", "Acts", "Romans", "1 Corinthians", "2 Corinthians", "Galatians", "Ephesians",
    "Philippians", "Colossians", "1 Thessalonians", "2 Thessalonians", "1 Timothy", "2 Timothy",
    "Titus", "Philemon", "Hebrews", "James", "1 Peter", "2 Peter", "1 John", "2 John", "3 John",
    "Jude", "Revelation",
]


def squash(s):
    return re.sub(r"\s+", " ", s).strip()


def kjv_docs(path):
    """One document per chapter: the verses, one per line, without references."""
    verse_re = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")
    abbrevs, chapters = [], {}
    with open(path, encoding="ascii") as f:
        for line in f:
            m = verse_re.match(line.rstrip("\n"))
            if not m:
                raise SystemExit(f"{path}: unexpected line: {line[:60]!r}")
            ab, ch, vs, text = m.group(1), int(m.group(2)), int(m.group(3)), squash(m.group(4))
            if not abbrevs or abbrevs[-1] != ab:
                abbrevs.append(ab)
            chapters.setdefault((ab, ch), []).append((vs, text))
    if len(abbrevs) != len(BOOKS):
        raise SystemExit(f"{path}: {len(abbrevs)} books, expected {len(BOOKS)}")
    names = dict(zip(abbrevs, BOOKS))
    for (ab, ch), verses in chapters.items():
        book = names[ab]
        yield {
            "source": "kjv",
            "title": f"{book} {ch}",
            "text": "\n".join(t for _, t in verses),
            "entries": [[f"{book} {ch}:{v}", t] for v, t in verses],
        }


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64num(s):
    n = 0
    for c in s:
        n = n * 64 + B64.index(c)
    return n


def reflow_devil(body):
    """Indented lines start a new line (verse, new paragraph); flush-left lines continue one."""
    out = []
    for block in re.split(r"\n\s*\n", body):
        lines = []
        for raw in block.split("\n"):
            if not raw.strip():
                continue
            if raw[0].isspace() or not lines:
                lines.append(squash(raw))
            else:
                lines[-1] += " " + squash(raw)
        if lines:
            out.append("\n".join(lines))
    return "\n\n".join(out)


def devil_docs(dict_path, index_path):
    data = open(dict_path, "rb").read()
    for line in open(index_path, encoding="utf-8"):
        word, off, size = line.rstrip("\n").split("\t")
        if word.startswith("00database"):
            continue
        body = data[b64num(off):b64num(off) + b64num(size)].decode("utf-8")
        text = reflow_devil(body)
        m = re.match(r"^([A-Z][A-Z0-9'. -]*?),? *((?:n|v|adj|adv|pp|p|x|v\.t|v\.i|pron|conj|prep|interj)\.)?\s+(.*)$",
                     text, re.S)
        headword = word
        definition = None
        if m and m.group(3):
            headword = m.group(1).strip().lower()
            definition = m.group(3).split("\n\n")[0].replace("\n", " ").strip()
        yield {"source": "devil", "title": headword, "text": text,
               "headword": headword, "definition": definition}


def jargon_docs(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    # Skip the table of contents (before "Welcome") and the glossary index list (up to the
    # first lexicon entry); both are lists of titles, not prose.
    start = next(i for i, l in enumerate(lines) if l.strip() == "Welcome to the Jargon File")
    gloss = next(i for i, l in enumerate(lines) if l == "Glossary")
    first_entry = next(i for i, l in enumerate(lines) if i > gloss and re.match(r"^   :.+:", l))
    keep = lines[start:gloss] + lines[first_entry:]
    blocks, cur = [], []
    for l in keep + [""]:
        if l.strip():
            cur.append(l)
        elif cur:
            blocks.append(cur)
            cur = []
    doc = None
    header_re = re.compile(r"^   :(.+?):\s*(.*)$")
    for b in blocks:
        indent = min(len(l) - len(l.lstrip(" ")) for l in b)
        if len(b) == 1 and indent >= 10:          # a section heading starts a document
            if doc:
                yield doc
            doc = {"source": "jargon", "title": squash(b[0]), "text": squash(b[0]),
                   "headword": None, "definition": None}
            continue
        if indent != 3 or any(re.search(r"[\u2500-\u257f]", l) for l in b):
            continue                              # code, ASCII art, drawn tables: not prose
        if re.match(r"^\(The (next|previous) cartoon", b[0].strip()) or \
                b[0].strip().startswith("(The next cartoon"):
            continue
        m = header_re.match(b[0]) if len(b) == 1 else None
        if m:
            if doc:
                yield doc
            head, pos = m.group(1).strip(), m.group(2).strip()
            title = f"{head}: {pos}" if pos else head
            doc = {"source": "jargon", "title": head, "text": title, "headword": head,
                   "definition": None}
            continue
        para = re.sub(r"\{([^{}]*)\}", r"\1", squash(" ".join(b)))   # {cross-reference} -> text
        if doc is None:
            doc = {"source": "jargon", "title": "", "text": para, "headword": None,
                   "definition": None}
        else:
            doc["text"] += "\n\n" + para
            if doc["headword"] and doc["definition"] is None:
                doc["definition"] = para
    if doc:
        yield doc


def main():
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    kjv, dev_dict, dev_index, jargon, out = sys.argv[1:]
    n = {"kjv": 0, "devil": 0, "jargon": 0}
    chars = dict(n)
    with open(out, "w", encoding="utf-8") as f:
        for gen in (kjv_docs(kjv), devil_docs(dev_dict, dev_index), jargon_docs(jargon)):
            for d in gen:
                if len(d["text"]) < 20:
                    continue
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
                n[d["source"]] += 1
                chars[d["source"]] += len(d["text"])
    for k in n:
        print(f"{k}: {n[k]} documents, {chars[k]} characters")


if __name__ == "__main__":
    main()
