#!/usr/bin/env python3
"""What of tweed's own code a fuzz corpus runs (scripts/fuzz.sh coverage, gaps).

    fuzz-coverage.py lines|gaps LLVM_COV BINARY PROFDATA ROOT

Reads `llvm-cov export` of a coverage build (`cargo fuzz coverage`) and looks
only at source files under ROOT (tweed's crates/):

lines  each file the corpus reaches at all, with its lines run and its lines
       in all, and the sum. Saturation is judged on these: libFuzzer's edge
       count includes the libraries (a YAML or JSON parser keeps offering new
       edges for hours) when tweed's own code has stopped changing.
gaps   the first line of every code region that never ran inside a function
       that did run. Functions that never ran are left out: most belong to
       other callers of the same crate, not to the target. What is left are
       the branches the target reaches the door of and never goes through:
       an error never hit, an option never spelled. A closure that never ran
       inside a function that did counts too (its own function to LLVM). A gap is closed by a
       seed input (fuzz/corpus/<target>/seed-*) or a dictionary word
       (fuzz/dict/<target>.dict), or explained (unreachable from the target).
"""
import json
import subprocess
import sys

CODE_REGION = 0  # llvm-cov's kind of a code region (others: expansion, gap, branch)


def export(llvm_cov: str, binary: str, profdata: str) -> dict:
    out = subprocess.run(
        [llvm_cov, "export", binary, f"-instr-profile={profdata}"],
        check=True,
        capture_output=True,
    ).stdout
    return json.loads(out)["data"][0]


def lines(data: dict, root: str) -> None:
    run = total = 0
    for f in sorted(data["files"], key=lambda f: f["filename"]):
        summary = f["summary"]["lines"]
        if not f["filename"].startswith(root) or summary["covered"] == 0:
            continue
        run += summary["covered"]
        total += summary["count"]
        name = f["filename"][len(root):]
        print(f"  {name:<56} {summary['covered']:5} of {summary['count']:5} lines")
    print(f"  {'tweed code reached':<56} {run:5} of {total:5} lines")


def span(function: dict):
    """(file, first (line, column), last (line, column)) of a function's body,
    or None for a function with no code region of its own."""
    own = [r for r in function["regions"] if r[5] == 0 and r[7] == CODE_REGION]
    if not own:
        return None
    return (
        function["filenames"][0],
        min((r[0], r[1]) for r in own),
        max((r[2], r[3]) for r in own),
    )


def gaps(data: dict, root: str) -> None:
    found = set()
    ran = [f for f in data["functions"] if f["count"] > 0 and f["regions"]]
    for function in ran:
        files = function["filenames"]
        for region in function["regions"]:
            line, count, file_id, kind = region[0], region[4], region[5], region[7]
            if count == 0 and kind == CODE_REGION and files[file_id].startswith(root):
                found.add((files[file_id], line))
    # A closure is a function of its own: one that never ran inside a
    # function that did (a `map_err(|e| ...)` of an error never hit) is a gap.
    bodies = [span(f) for f in ran if f["filenames"][0].startswith(root)]
    bodies = [b for b in bodies if b]
    for function in data["functions"]:
        if function["count"] != 0 or not function["filenames"][0].startswith(root):
            continue
        closure = span(function)
        if closure is None:
            continue
        path, first, last = closure
        if any(p == path and a < first and last < b for p, a, b in bodies):
            found.add((path, first[0]))
    for path, line in sorted(found):
        with open(path, encoding="utf-8") as source:
            text = source.read().splitlines()[line - 1].strip()
        print(f"{path[len(root):]}:{line}: {text[:110]}")
    print(f"{len(found)} gaps", file=sys.stderr)


def main() -> None:
    mode, llvm_cov, binary, profdata, root = sys.argv[1:6]
    data = export(llvm_cov, binary, profdata)
    {"lines": lines, "gaps": gaps}[mode](data, root)


if __name__ == "__main__":
    main()
