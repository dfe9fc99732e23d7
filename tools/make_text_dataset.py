"""The bundled text example's data: real one-line descriptions from the NAME sections of a Debian system's manual
pages, labelled by what the page documents (its manual section):
  * `command` — section 1 (user commands) and 8 (administration commands), Google Cloud SDK pages left out (they
    are thousands of near-identical `gcloud` lines);
  * `function` — section 3 (library calls), Perl, Tcl and OpenSSL module pages left out;
  * `file` — section 5 (file formats and configuration files).

Each class gets at most `--per_class` rows, drawn at random with `--seed` from the pages with a distinct description
(`file` has fewer pages than that); rows are written sorted by page name.

Usage::

    python -m tools.make_text_dataset --man /usr/share/man --out examples/text/data/manpages.csv --seed 7
"""
from __future__ import annotations

import argparse
import csv
import gzip
import os
import random
import re
from typing import Iterator, Optional, Sequence

KINDS = {"1": "command", "8": "command", "3": "function", "5": "file"}
SKIPPED_PAGES = re.compile(r"^gcloud|\.3(pm|perl|ssl|tcl|x)\b")
NAME_SECTION = re.compile(r"^\.S[Hh]\s+\"?NAME\"?\s*\n(.*?)(?=^\.S[HhSs]\b)", re.M | re.S)
ROFF_ESCAPES = re.compile(r"\\f[BIRP0-9]|\\\((em|en|aq|dq)|\\&|\\s[-+]?\d")


def description(page_source: str) -> Optional[str]:
    """The text after the dash of a page's NAME section (`ls \\- list directory contents`), or None."""
    found = NAME_SECTION.search(page_source)
    if not found:
        return None
    lines = [line for line in found.group(1).splitlines() if line.strip() and not line.startswith((".", "'"))]
    text = ROFF_ESCAPES.sub("", " ".join(lines)).replace("\\-", "-").replace("\\", "")
    if " - " not in text:
        return None
    return " ".join(text.split(" - ", 1)[1].split()) or None


def pages(man_dir: str) -> Iterator[tuple[str, str, str]]:
    """(page, description, kind) of every page of the sections in KINDS that has a description."""
    for section, kind in sorted(KINDS.items()):
        directory = os.path.join(man_dir, f"man{section}")
        for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
            if SKIPPED_PAGES.search(name):
                continue
            opener = gzip.open if name.endswith(".gz") else open
            try:
                with opener(os.path.join(directory, name), "rt", errors="replace") as f:
                    text = description(f.read(50_000))
            except OSError:
                continue
            if text:
                yield name.removesuffix(".gz"), text, kind


def sample(rows: Sequence[tuple[str, str, str]], per_class: int, seed: int) -> list[tuple[str, str, str]]:
    """At most `per_class` rows per kind, each description once (its first page), sorted by page."""
    by_kind: dict[str, list] = {}
    seen: set[str] = set()
    for row in rows:
        if row[1].lower() not in seen:
            seen.add(row[1].lower())
            by_kind.setdefault(row[2], []).append(row)
    rng = random.Random(seed)
    return sorted(row for kind in sorted(by_kind)
                  for row in rng.sample(by_kind[kind], min(per_class, len(by_kind[kind]))))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--man", default="/usr/share/man")
    parser.add_argument("--out", required=True)
    parser.add_argument("--per_class", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rows = sample(list(pages(args.man)), args.per_class, args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["page", "description", "kind"])
        writer.writerows(rows)
    kinds = sorted({kind for _, _, kind in rows})
    print(f"{len(rows)} rows ({', '.join(f'{kind} {sum(r[2] == kind for r in rows)}' for kind in kinds)}) → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
