"""Benchmark: one-time code detection per letter (mail.codes), over the corpus.

    .venv/bin/python bench/codes.py [--rounds 200]

Two figures per letter of tests/corpus/codes/: `find_code` on the subject and the decoded text
(what the importer calls for each new letter; the text is decoded anyway for the snippet), and
`code_in_message` on the whole .eml (MIME parsing and decoding included). Prints the median and
p99 over all letters and rounds, in microseconds, and the corpus' precision and recall.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mail import mime  # noqa: E402
from mail.codes import code_in_message, find_code, message_text  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus" / "codes"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    manifest: dict[str, str | None] = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
    letters = []
    for name in manifest:
        data = (CORPUS / name).read_bytes()
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        letters.append((name, data, mime.header_text(msg.get("Subject")), message_text(msg)))
    detect: list[float] = []
    whole: list[float] = []
    for _ in range(args.rounds):
        for _name, data, subject, text in letters:
            t0 = time.perf_counter()
            find_code(subject, text)
            t1 = time.perf_counter()
            code_in_message(data)
            t2 = time.perf_counter()
            detect.append((t1 - t0) * 1e6)
            whole.append((t2 - t1) * 1e6)
    found = {name: code_in_message(data) for name, data, _s, _t in letters}
    tp = sum(1 for n, c in found.items() if c is not None and c == manifest[n])
    fp = sum(1 for n, c in found.items() if c is not None and c != manifest[n])
    fn = sum(1 for n, c in found.items() if c is None and manifest[n] is not None)
    print(f"corpus: {len(letters)} letters ({sum(1 for c in manifest.values() if c)} with a code), {args.rounds} rounds")
    print(f"precision {tp / max(1, tp + fp):.3f}, recall {tp / max(1, tp + fn):.3f}")
    for label, values in (("find_code (subject + decoded text)", detect), ("code_in_message (whole .eml)", whole)):
        print(f"{label:40s} median {statistics.median(values):8.1f} µs   p99 {pct(values, 0.99):8.1f} µs   "
              f"max {max(values):8.1f} µs")


if __name__ == "__main__":
    main()
