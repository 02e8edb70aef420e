"""Benchmark: the alert decision per letter with many rules (services/attention.py).

    python bench/rules.py [--rules 1000] [--letters 20000]

Builds one user's RuleIndex of --rules rules (a mix of senders, domains, single words and
multi-word subject phrases, mute and VIP), then decides --letters letters (random senders,
some matching, subjects of realistic length, some matching), with quiet hours on in a real
IANA zone, through ``services.attention.plan`` in batches of 10 — the same call the notifier
makes. Prints the index build time and the time per letter (mean, p50, p99, max). Target:
under 1 ms per letter with 1,000 rules. The database read of the rules (one query per batch)
is not included: it is the same one query whatever the number of rules.
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.attention import Prefs, RuleIndex, plan  # noqa: E402


def word(rng: random.Random, n: int = 7) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def make_rules(rng: random.Random, count: int) -> list[tuple[str, str, str]]:
    rules = []
    for i in range(count):
        action = "vip" if i % 10 == 0 else "mute"
        kind = ("sender", "domain", "subject", "subject")[i % 4]
        if kind == "sender":
            value = f"{word(rng)}@{word(rng)}.example"
        elif kind == "domain":
            value = f"{word(rng)}.{word(rng, 3)}.example"
        elif i % 8 == 2:
            value = f"{word(rng)} {word(rng)}"  # a phrase: scanned
        else:
            value = word(rng)
        rules.append((kind, value, action))
    return rules


def make_letters(rng: random.Random, rules: list[tuple[str, str, str]], count: int) -> list[SimpleNamespace]:
    letters = []
    for n in range(count):
        kind, value, _ = rng.choice(rules)
        hit = n % 5 == 0
        sender = value if hit and kind == "sender" else f"{word(rng)}@{word(rng)}.example"
        if hit and kind == "domain":
            sender = f"news@mail.{value}"
        subject = " ".join(word(rng, rng.randint(3, 10)) for _ in range(rng.randint(4, 14)))
        if hit and kind == "subject":
            subject += " " + value
        letters.append(SimpleNamespace(id=n, from_addr=sender, subject=subject))
    return letters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--letters", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rules = make_rules(rng, args.rules)
    started = time.perf_counter()
    index = RuleIndex(rules)
    build_ms = (time.perf_counter() - started) * 1000
    letters = make_letters(rng, rules, args.letters)
    prefs = Prefs("Europe/Berlin", 22 * 60, 8 * 60, "hold", True, 6)
    now = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    per_letter: list[float] = []
    outcome = {"muted": 0, "held": 0, "alerted": 0}
    for start in range(0, len(letters), 10):
        batch = letters[start : start + 10]
        t0 = time.perf_counter()
        result = plan(batch, index, prefs, sound=True, now=now + timedelta(minutes=start))
        per_letter.append((time.perf_counter() - t0) / len(batch))
        outcome["muted"] += len(result.muted)
        outcome["held"] += len(result.held)
        outcome["alerted"] += len(result.alerts)
    micro = sorted(x * 1e6 for x in per_letter)
    p99 = micro[min(len(micro) - 1, int(len(micro) * 0.99))]
    print(f"rules: {index.size} ({len(index.senders)} senders, {len(index.domains)} domains, "
          f"{len(index.words)} words, {len(index.phrases)} phrases); index built in {build_ms:.2f} ms")
    print(f"letters: {len(letters)} in batches of 10; outcome {outcome}")
    print(f"per letter: mean {statistics.fmean(micro):.1f} µs, p50 {statistics.median(micro):.1f} µs, "
          f"p99 {p99:.1f} µs, max {micro[-1]:.1f} µs (target < 1000 µs)")
    print("OK" if p99 < 1000 else "SLOWER THAN TARGET")


if __name__ == "__main__":
    main()
