"""Deduplication throughput, lmbook.dedup against datasketch, as ratios within one run (chapter 11).

    python bench/bench_dedup.py                   # writes bench/results/bench_dedup.{json,txt}
    python bench/bench_dedup.py --repeats 7 --docs 4000

The documents are the TinyStories sample's paragraphs (mojibake repaired), repeated if --docs asks
for more. Two measurements, each interleaved (the variants take turns, repeat after repeat, so that a
change in the machine's load hits them alike; medians are compared, with the range over repeats):

1. signing: 128-function MinHash signatures of every document's character 5-shingles, by
   datasketch (``MinHash.bulk`` on the shingles' UTF-8 bytes: its batch interface, which draws the
   permutations once for all the documents), by lmbook with datasketch's
   SHA-1 hash (the same signatures: checked), and by lmbook with ``hash="fast"`` (numpy's polynomial
   hash of the shingles; other random functions, the same estimator);
2. indexing and querying: the signatures inserted into an LSH index with the same bands and rows
   (datasketch's ``MinHashLSH`` and lmbook's ``LSHIndex``), then every document queried.

One torch-free process, one thread (numpy's BLAS is not used by either).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lmbook import corpus, data, dedup  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def documents(n: int) -> list[str]:
    text = corpus.fix_mojibake(data.load_text("tinystories_valid_sample"))[0]
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return (paragraphs * (n // len(paragraphs) + 1))[:n]


def sign_datasketch(docs, num_perm):
    import datasketch

    # MinHash.bulk: datasketch's batch interface, one set of permutations shared by all the documents
    return datasketch.MinHash.bulk([[s.encode("utf-8") for s in dedup.shingles(doc)] for doc in docs],
                                   num_perm=num_perm, seed=1)


def sign_lmbook(docs, num_perm, hash):
    hasher = dedup.MinHasher(num_perm, seed=1)
    return [hasher.signature(dedup.shingle_hashes(doc, 5, hash)) for doc in docs]


def index_datasketch(minhashes, bands, rows):
    import datasketch

    lsh = datasketch.MinHashLSH(num_perm=bands * rows, params=(bands, rows))
    for i, m in enumerate(minhashes):
        lsh.insert(i, m)
    return sum(len(lsh.query(m)) for m in minhashes)


def index_lmbook(sigs, bands, rows):
    index = dedup.LSHIndex(bands, rows)
    for i, s in enumerate(sigs):
        index.insert(i, s)
    return sum(len(index.query(s)) for s in sigs)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=4300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--out", default=str(RESULTS / "bench_dedup"))
    args = parser.parse_args(argv)

    docs = documents(args.docs)
    chars = sum(map(len, docs))
    bands, rows = dedup.optimal_bands(0.8, args.num_perm, dedup.RECALL_FIRST)
    load = os.getloadavg()[0]
    sign = {"datasketch": [], "lmbook (sha1)": [], "lmbook (fast)": []}
    index = {"datasketch": [], "lmbook": []}
    warm = docs[:50]  # imports and first-call costs out of the timings
    index_datasketch(sign_datasketch(warm, args.num_perm), bands, rows)
    index_lmbook(sign_lmbook(warm, args.num_perm, "sha1"), bands, rows)
    sign_lmbook(warm, args.num_perm, "fast")
    for _ in range(args.repeats):
        t, theirs = timed(lambda: sign_datasketch(docs, args.num_perm))
        sign["datasketch"].append(t)
        t, ours = timed(lambda: sign_lmbook(docs, args.num_perm, "sha1"))
        sign["lmbook (sha1)"].append(t)
        assert all(np.array_equal(a, b.hashvalues) for a, b in zip(ours, theirs)), "signatures differ from datasketch's"
        t, _ = timed(lambda: sign_lmbook(docs, args.num_perm, "fast"))
        sign["lmbook (fast)"].append(t)
        t, found_theirs = timed(lambda: index_datasketch(theirs, bands, rows))
        index["datasketch"].append(t)
        t, found_ours = timed(lambda: index_lmbook(ours, bands, rows))
        index["lmbook"].append(t)
        assert found_ours == found_theirs, f"LSH candidates differ: {found_ours} vs {found_theirs}"

    def summary(times):
        med = statistics.median(times)
        return {"median_s": med, "min_s": min(times), "max_s": max(times), "docs_per_s": len(docs) / med,
                "mchars_per_s": chars / med / 1e6}

    import datasketch

    result = {
        "command": "python bench/bench_dedup.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{os.cpu_count()} cpus, python {platform.python_version()}, numpy {np.__version__}, "
                   f"datasketch {datasketch.__version__}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_at_start": load, "load_at_end": os.getloadavg()[0],
        "docs": len(docs), "characters": chars, "num_perm": args.num_perm, "bands": bands, "rows": rows,
        "repeats": args.repeats,
        "sign": {k: summary(v) for k, v in sign.items()},
        "index_and_query": {k: summary(v) for k, v in index.items()},
    }
    ref_sign, ref_index = result["sign"]["datasketch"]["median_s"], result["index_and_query"]["datasketch"]["median_s"]
    lines = [f"bench_dedup: {result['date']}, {result['machine']}, load {load:.2f} -> {result['load_at_end']:.2f}",
             f"{len(docs):,} TinyStories paragraphs ({chars:,} characters), {args.num_perm} hash functions, "
             f"{bands} bands x {rows} rows, {args.repeats} interleaved repeats (median [min, max] seconds)",
             "signing (character 5-shingles -> MinHash signature):"]
    for k, v in result["sign"].items():
        lines.append(f"  {k:15s} {v['median_s']:7.3f} s [{v['min_s']:.3f}, {v['max_s']:.3f}]  {v['docs_per_s']:9,.0f} docs/s  "
                     f"{v['mchars_per_s']:5.2f} M chars/s  {ref_sign / v['median_s']:5.2f}x datasketch")
    lines.append("LSH: insert every signature, then query every one (the same candidates, checked):")
    for k, v in result["index_and_query"].items():
        lines.append(f"  {k:15s} {v['median_s']:7.3f} s [{v['min_s']:.3f}, {v['max_s']:.3f}]  "
                     f"{ref_index / v['median_s']:5.2f}x datasketch")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n")
    Path(args.out + ".txt").write_text(text)
    return result


if __name__ == "__main__":
    main()
