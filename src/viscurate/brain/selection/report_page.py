"""The curation report as one self-contained HTML page: inline SVG charts and thumbnails as ``data:`` URIs
(no CDN, no web fonts, no links out), so it opens offline and can be mailed.

>>> groups = render_page(report, picked, entries, paths, Path("report.html"))        # doctest: +SKIP

``report`` is the JSON twin :func:`viscurate.brain.selection.report.curation_report` builds; the page
shows its verdicts, a chart per metric (the selection beside the random mean with its spread), the class
distribution before (pool) and after (selection), and the picks as thumbnails grouped by why they were
picked (at most ``PER_GROUP`` a group and ``MAX_THUMBS`` in all, with counts).
"""
from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path
from typing import Any, Sequence

__all__ = ["render_page", "group_key", "thumb_uri", "PER_GROUP", "MAX_THUMBS"]

PER_GROUP = 24
MAX_THUMBS = 200
THUMB = 96
MAX_CLASSES_DRAWN = 40
BLUE, GREY, LIGHT, RED, GREEN = "#3b6fc4", "#8a8f98", "#d5d8dd", "#c0392b", "#2e8b57"

CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{margin-bottom:.2em} .meta{color:#555;font-size:13px} code{background:#f3f3f3;padding:0 3px}
.verdicts li{margin:3px 0} .headline{font-size:16px} .better{color:#1e6b41} .worse{color:#a03020} .same{color:#8a5a00}
.cards{display:flex;flex-wrap:wrap;gap:14px} .card{border:1px solid #ddd;border-radius:6px;padding:8px 10px;width:300px}
.card h3{font-size:14px;margin:0 0 4px} .card p{font-size:12px;margin:4px 0;color:#444}
table{border-collapse:collapse;font-size:13px} td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:left}
.groups{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.group{border:1px solid #e3e3e3;border-radius:6px;padding:4px 6px;max-width:100%}
.group h3{font-size:12px;margin:2px 0} .group p{font-size:11px;margin:0 0 4px;max-width:330px;color:#555}
.thumbs{display:flex;flex-wrap:wrap;gap:6px} figure{margin:0;width:76px;font-size:10px}
figure img{width:72px;height:72px;object-fit:contain;background:#f4f4f4;image-rendering:pixelated;display:block}
figcaption{overflow-wrap:anywhere} .warn{background:#fff6e0;border-left:4px solid #e0a800;padding:6px 10px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def thumb_uri(path: str | None) -> str:
    """A small picture of the image at ``path`` as a ``data:`` URI ("" when it cannot be read): PNG for
    tiny images (they stay sharp), JPEG otherwise."""
    from ...media.draw import load_upright

    try:
        im = load_upright(path)
        small = max(im.size) <= THUMB
        im.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        if small:
            im.save(buf, "PNG")
        else:
            im.convert("RGB").save(buf, "JPEG", quality=80)
        kind = "png" if small else "jpeg"
        return f"data:image/{kind};base64," + base64.b64encode(buf.getvalue()).decode()
    except Exception:  # noqa: BLE001 - a vanished or unreadable file: an empty frame, not a failed page
        return ""


def _class_of(v: dict) -> str:
    if v.get("better"):
        return "better"
    z = v.get("z")
    return "worse" if (z is not None and z <= -2) or (z is None and not v.get("better")) else "same"


def metric_svg(v: dict) -> str:
    """Two bars: the selection and the random mean, the random spread (+- 1 std) as an error bar."""
    w, h, pad, base = 280, 120, 24, 100
    sel, mean, std = float(v["selection"]), float(v["random_mean"]), float(v["random_std"])
    top = max(sel, mean + std, 1e-9) * 1.15
    y = lambda val: base - (base - pad) * max(val, 0.0) / top  # noqa: E731 - a scale, read once below
    bars = [("selection", sel, BLUE, 50), ("random", mean, GREY, 160)]
    parts = []
    for name, val, colour, x in bars:
        parts.append(f'<rect x="{x}" y="{y(val):.1f}" width="70" height="{base - y(val):.1f}" fill="{colour}">'
                     f'<title>{name}: {val:.4g}</title></rect>'
                     f'<text x="{x + 35}" y="{y(val) - 4:.1f}" text-anchor="middle">{val:.3g}</text>'
                     f'<text x="{x + 35}" y="{base + 14}" text-anchor="middle">{name}</text>')
    lo, hi = y(mean - std), y(mean + std)
    parts.append(f'<line x1="195" x2="195" y1="{hi:.1f}" y2="{lo:.1f}" stroke="#222" stroke-width="1.5"/>'
                 f'<line x1="188" x2="202" y1="{hi:.1f}" y2="{hi:.1f}" stroke="#222"/>'
                 f'<line x1="188" x2="202" y1="{lo:.1f}" y2="{lo:.1f}" stroke="#222"/>'
                 f'<rect x="30" y="{hi:.1f}" width="240" height="{max(lo - hi, 0.5):.1f}" fill="{GREY}" opacity="0.15">'
                 f'<title>random mean +- std: {mean:.4g} +- {std:.2g}</title></rect>')
    return (f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" font-size="11" font-family="sans-serif">'
            f'<line x1="30" x2="{w - 10}" y1="{base}" y2="{base}" stroke="#999"/>' + "".join(parts) + "</svg>")


def classes_svg(b: dict) -> str:
    """The class distribution: per class the pool's share, the random subsets' mean share (+- std) and
    the selection's share; the pool's most frequent ``MAX_CLASSES_DRAWN`` classes."""
    classes = b["classes"][:MAX_CLASSES_DRAWN]
    pool_total = max(sum(b["pool"]), 1)
    sel_total = max(sum(b["selection"]), 1)
    rnd_total = max(sum(b["random_mean"]), 1e-9)
    series = [("pool", [c / pool_total for c in b["pool"]], LIGHT),
              ("random mean", [c / rnd_total for c in b["random_mean"]], GREY),
              ("selection", [c / sel_total for c in b["selection"]], BLUE)]
    errs = [s / rnd_total for s in b["random_std"]]
    step, bw, base, pad = 36, 9, 170, 20
    w = 90 + step * len(classes)
    top = max(max(vals[:len(classes)] or [0]) for _, vals, _ in series) * 1.15 or 1.0
    y = lambda val: base - (base - pad) * val / top  # noqa: E731
    parts = []
    for k, name in enumerate(classes):
        x0 = 50 + k * step
        for s, (label, vals, colour) in enumerate(series):
            x = x0 + s * (bw + 1)
            parts.append(f'<rect x="{x}" y="{y(vals[k]):.1f}" width="{bw}" height="{base - y(vals[k]):.1f}" '
                         f'fill="{colour}"><title>{_e(name)}: {label} {vals[k]:.1%}</title></rect>')
        xm = x0 + (bw + 1) + bw / 2
        mean = series[1][1][k]
        parts.append(f'<line x1="{xm}" x2="{xm}" y1="{y(mean + errs[k]):.1f}" y2="{y(max(mean - errs[k], 0)):.1f}" '
                     f'stroke="#222"/>')
        parts.append(f'<text transform="translate({x0 + 14},{base + 8}) rotate(40)" font-size="10">'
                     f'{_e(str(name)[:18])}</text>')
    legend = "".join(f'<rect x="{60 + i * 110}" y="2" width="10" height="10" fill="{c}"/>'
                     f'<text x="{74 + i * 110}" y="11">{label}</text>' for i, (label, _, c) in enumerate(series))
    ticks = "".join(f'<text x="44" y="{y(t):.1f}" text-anchor="end" font-size="10">{t:.0%}</text>'
                    f'<line x1="46" x2="{w}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#eee"/>'
                    for t in (top / 1.15 / 2, top / 1.15))
    return (f'<svg width="{max(w, 400)}" height="{base + 110}" role="img" font-size="11" font-family="sans-serif">'
            + legend + ticks + f'<line x1="46" x2="{w}" y1="{base}" y2="{base}" stroke="#999"/>' + "".join(parts)
            + "</svg>")


def _card(v: dict) -> str:
    return (f'<div class="card"><h3>{_e(v["label"])}</h3>{metric_svg(v)}'
            f'<p class="{_class_of(v)}"><b>{_e(v["verdict"])}</b></p>'
            f'<p>selection {v["selection"]:.4g}; random {v["random_mean"]:.4g} +- {v["random_std"]:.2g} '
            f'({"higher" if v["direction"] == "higher" else "lower"} is better)</p>'
            f'<p>{_e(v.get("explain", ""))}</p></div>')


def group_key(entry: dict | None) -> str:
    """What a pick is shown under: its cluster when the strategy recorded one, else its reason with the
    numbers taken out (so "3rd most uncertain: entropy 1.91" and "4th ..." share a group).

    >>> group_key({"cluster": 12, "reason": "only pick of cluster 12 (31 members)"})
    'cluster 12'
    >>> group_key({"cluster": None, "reason": "2nd most uncertain: entropy 1.91"})
    'most uncertain: entropy'
    >>> group_key(None)
    'in the slice (no selection entry)'
    """
    if not entry:
        return "in the slice (no selection entry)"
    if entry.get("cluster") is not None:
        return f"cluster {entry['cluster']}"
    reason = str(entry.get("reason") or entry.get("strategy") or "picked")
    text = re.sub(r"\(?[-+]?\d[\d,.]*(st|nd|rd|th|%)?\)?", "", reason)
    return re.sub(r"\s+", " ", text).strip(" :,;-") or str(entry.get("strategy") or "picked")


def _groups(picked: Sequence[str], entries: dict[str, dict]) -> list[tuple[str, list[str]]]:
    """Picks grouped by :func:`group_key`, groups in the order of their best-ranked pick."""
    groups: dict[str, list[str]] = {}
    for s in picked:
        groups.setdefault(group_key(entries.get(s)), []).append(s)
    return list(groups.items())


def _thumbs_html(picked: Sequence[str], entries: dict[str, dict],
                 paths: dict[str, str | None]) -> tuple[str, list[dict]]:
    out, listed, shown_total = [], [], 0
    for key, members in _groups(picked, entries):
        room = max(0, min(PER_GROUP, MAX_THUMBS - shown_total))
        shown = members[:room]
        shown_total += len(shown)
        listed.append({"group": key, "picks": len(members), "shown": shown})
        figures = []
        for s in shown:
            e = entries.get(s) or {}
            path = paths.get(s)
            tip = "; ".join(f"{k}: {e[k]}" for k in ("strategy", "rank", "score", "cluster", "reason")
                            if e.get(k) is not None) or s
            figures.append(f'<figure title="{_e(tip)}"><img alt="{_e(s)}" src="{thumb_uri(path)}">'
                           f'<figcaption>{"#" + _e(e["rank"]) + " " if e.get("rank") is not None else ""}'
                           f'{_e(Path(path).name if path else s)}</figcaption></figure>')
        example = (entries.get(members[0]) or {}).get("reason")
        more = f", showing {len(shown)}" if len(shown) < len(members) else ""
        out.append(f'<section class="group"><h3>{_e(key)}: {len(members)} pick{"s" if len(members) != 1 else ""}'
                   f'{more}</h3>' + (f'<p>e.g. {_e(example)}</p>' if example else "")
                   + f'<div class="thumbs">{"".join(figures) or "<p>(not shown: the page holds at most "}'
                   + ("" if figures else f"{MAX_THUMBS} thumbnails)</p>") + "</div></section>")
    return f'<div class="groups">{"".join(out)}</div>', listed


def render_page(report: dict, picked: Sequence[str], entries: dict[str, dict], paths: dict[str, str | None],
                out: Path) -> list[dict]:
    """Write the page to ``out``; returns the thumbnail groups (``{"group", "picks", "shown"}``)."""
    recipe = report.get("selection") or {}
    verdicts = [(v, v["label"]) for v in report["metrics"].values()] + [
        (v, f'{b["label"]}: {v["label"]}') for b in report["balance"].values() for v in b["metrics"].values()]
    verdict_list = "".join(f'<li class="{_class_of(v)}">{_e(label)}: <b>{_e(v["verdict"])}</b> '
                           f'({v["selection"]:.4g} vs {v["random_mean"]:.4g} +- {v["random_std"]:.2g})</li>'
                           for v, label in verdicts)
    cards = "".join(_card(v) for v in report["metrics"].values())
    balance = []
    for b in report["balance"].values():
        rows = "".join(f'<tr><td>{_e(v["label"])}</td><td>{v["selection"]:.4g}</td>'
                       f'<td>{v["random_mean"]:.4g} +- {v["random_std"]:.2g}</td>'
                       f'<td class="{_class_of(v)}">{_e(v["verdict"])}</td></tr>' for v in b["metrics"].values())
        drawn = "" if len(b["classes"]) <= MAX_CLASSES_DRAWN else (
            f'<p class="meta">the {MAX_CLASSES_DRAWN} most frequent of {len(b["classes"])} classes drawn</p>')
        counts = "".join(f'<tr><td>{_e(c)}</td><td>{p}</td><td>{r:.1f}</td><td>{s}</td></tr>'
                         for c, p, r, s in zip(b["classes"], b["pool"], b["random_mean"], b["selection"]))
        missing = (f'<p class="meta">without a value: {b["pool_missing"]} in the pool, {b["selection_missing"]} '
                   'picked</p>' if b["pool_missing"] else "")
        balance.append(f'<h3>{_e(b["label"])}</h3><table><tr><th>metric</th><th>selection</th><th>random</th>'
                       f'<th>verdict</th></tr>{rows}</table>{classes_svg(b)}{drawn}{missing}'
                       f'<details><summary>counts per class</summary><table><tr><th>class</th><th>pool</th>'
                       f'<th>random mean</th><th>selection</th></tr>{counts}</table></details>')
    thumbs, groups = _thumbs_html(picked, entries, paths)
    warnings = "".join(f'<p class="warn">{_e(w)}</p>' for w in report["warnings"])
    dropped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (report.get("dropped") or {}).items() if v)
    how = (f'strategy <b>{_e(recipe.get("strategy"))}</b>, budget {_e(recipe.get("n"))}, seed {_e(recipe.get("seed"))}'
           if recipe else "a slice saved by hand (no selection recipe)")
    query = json.dumps(report.get("query"), sort_keys=True) if report.get("query") else "every usable sample"
    cov = report["metrics"].get("cluster_coverage")
    headline = (f'<p class="headline {_class_of(cov)}"><b>{_e(report.get("headline") or cov["verdict"])}</b> '
                f'(on clusters the selection did not see: {_e(cov.get("source", ""))})</p>' if cov else "")
    title = f"viscurate curation report: {_e(report['slice'])}"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>{CSS}</style></head><body>
<h1>Curation report: {_e(report["slice"])}</h1>
<p class="meta">{how}; {report["selected"]} selected from a pool of {report["pool"]:,} candidates ({_e(query)};
model {_e(report["model"])}{"; dropped: " + _e(dropped) if dropped else ""}); compared with {report["random_subsets"]}
random subsets of {report["measured"]} from the same pool (seed {report["seed"]}). Made {_e(report["created_at"])}.</p>
{warnings}
<h2>Verdicts</h2>
<p class="meta">"Better than random" means at least {report["z_better"]:g} standard deviations of the random subsets
better in the metric's good direction; anything less is said to be no better than random.</p>
{headline}<ul class="verdicts">{verdict_list}</ul>
<h2>Metrics</h2><div class="cards">{cards}</div>
<h2>Balance before (pool) and after (selection)</h2>{"".join(balance) or "<p>No class or field measured.</p>"}
<h2>The picks, by why they were picked</h2>
<p class="meta">At most {PER_GROUP} a group and {MAX_THUMBS} in all; hover a picture for its rank, score and reason.</p>
{thumbs}
</body></html>"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return groups
