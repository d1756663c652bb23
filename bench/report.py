"""Render a results JSON (bench/results/*.json) as Markdown tables, for bench/README.md.

    python bench/report.py bench/results/query-2026-11-23-n20000.json
    python bench/report.py bench/results/ingest-2026-11-23.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    out = ["| " + " | ".join(headers) + " |",
           "| " + " | ".join("---:" if i in right else "---" for i in range(len(headers))) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def machine(res: dict) -> str:
    m = res["machine"]
    return f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}"


def ingest_md(res: dict) -> str:
    rows = []
    for folder, b in res["folders"].items():
        for r in b["runs"]:
            label = r.get("label") or r["tool"]
            sp = "" if r["tool"] == "viscurate" else b["speedup_vs"].get(label)
            sp = f"{sp:.2f}x" if isinstance(sp, float) else ("-" if sp is None else str(sp))
            rows.append([folder, f"{label} {r.get('version') or ''}".strip(), r.get("status", "-"),
                         _f(r.get("images")), _f(r.get("failed")), _f(r.get("skipped")),
                         _f(r.get("seconds")), _f(r.get("images_per_s"), 1),
                         _f(r.get("mb_per_s"), 1), _f(r.get("peak_rss_mb"), 0), sp])
    hdr = ["folder", "tool", "status", "images", "failed", "skipped", "seconds", "images/s", "MB/s",
           "peak RSS MB", "viscurate speed-up"]
    return (f"Ingest, {res['date']}, {machine(res)}"
            + (f", subset {res['subset']}" if res.get("subset") else "") + "\n\n"
            + _table(hdr, rows, set(range(3, 11))))


def query_md(res: dict) -> str:
    mg, vc = res["mongodb"], res.get("viscurate", {})
    vc_ok = vc.get("status") == "ok"
    load = [["MongoDB " + mg.get("version", "?"), _f(mg.get("docs")), _f(mg.get("load_seconds")),
             _f(mg.get("load_docs_per_s"), 0), _f(mg.get("index_seconds")), _f(mg.get("disk_mb"), 1),
             _f(mg.get("peak_rss_mb"), 0)]]
    load.append(["viscurate " + str(vc.get("version", "")), _f(vc.get("docs")),
                 _f(vc.get("load_seconds")), _f(vc.get("load_docs_per_s"), 0), "-",
                 _f(vc.get("disk_mb"), 1), _f(vc.get("peak_rss_mb"), 0)] if vc_ok else
                ["viscurate", "pending", "pending", "pending", "-", "pending", "pending"])
    lh = ["engine", "docs", "load s", "docs/s", "index build s", "data+index MB", "peak RSS MB"]
    qh = ["query", "matches", "Mongo no index: count / page p50", "Mongo indexed: count p50 / p95",
          "Mongo indexed: page p50 / p95", "viscurate: count p50 / p95", "viscurate: page p50 / p95",
          "speed-up (page p50)"]
    rows = []
    for q in res["queries"]:
        name = q["name"]
        r = mg["indexed"][name]
        u = mg.get("unindexed", {}).get(name)
        row = [f"{name}{' (sorted)' if q['sort'] else ''}", _f(r["matches"]),
               f"{u['count']['p50_ms']:.2f} / {u['page']['p50_ms']:.2f}" if u else "-",
               f"{r['count']['p50_ms']:.2f} / {r['count']['p95_ms']:.2f}",
               f"{r['page']['p50_ms']:.2f} / {r['page']['p95_ms']:.2f}"]
        e = vc.get("queries", {}).get(name) if vc_ok else None
        if e and "error" not in e:
            row += [f"{e['count']['p50_ms']:.2f} / {e['count']['p95_ms']:.2f}",
                    f"{e['page']['p50_ms']:.2f} / {e['page']['p95_ms']:.2f}",
                    f"{r['page']['p50_ms'] / e['page']['p50_ms']:.2f}x"
                    + ("" if e.get("agrees", True) else " (DISAGREES)")]
        else:
            row += ["pending"] * 3 if not vc_ok else ["error", "error", "-"]
        rows.append(row)
    return (f"Query, N={res['n']:,} (seed {res['seed']}), {res['date']}, {machine(res)}; "
            f"{res['runs']} runs after {res['warmup']} warm-ups, times in ms\n\n"
            + _table(lh, load, set(range(1, 7))) + "\n\n" + _table(qh, rows, set(range(1, 8))))


def main() -> int:
    for p in sys.argv[1:]:
        res = json.loads(Path(p).read_text())
        print(ingest_md(res) if res.get("benchmark") == "ingest" else query_md(res))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
