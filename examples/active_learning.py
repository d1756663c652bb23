"""The active-learning loop on a labeled corpus that plays the annotator (docs/active-learning.md).

    python examples/active_learning.py --dataset fashion_mnist --pool 2000 --test 500 --batch 40 --rounds 5
    python examples/active_learning.py --images DIR --tool cvat      # DIR/<class>/<image>: your own labeled set

Each arm starts from a catalog of images without labels (a held-out test set, whose truth only this script
knows, is never selectable) and repeats, for ``--rounds`` rounds:

1. **select** a batch of ``--batch`` samples among the unlabeled ones: ``ds.select(b, strategy=...,
   slice="al-round-<r>")`` (``cluster_coverage`` or ``random`` first, then ``uncertainty`` on the head);
2. **export** the slice as labeling tasks, the head's current class as the pre-annotation
   (``ds.export(..., format="labelstudio", slice=..., label_field="head.label")``, or ``--tool cvat``);
3. **annotate**: the corpus answers, written into the exported tasks exactly where Label Studio's JSON
   export (or CVAT's annotations.xml) holds a person's answer: the file an annotator would give back;
4. **import** it: ``ds.import_labels(returned, format=..., by="annotator")`` (matched by sample id, audited);
5. **refit** the head (``ds.fit_head()``) and measure its accuracy on the held-out set.

The arms (``--arms``): ``coverage+uncertainty`` (cluster coverage first, then uncertainty), ``uncertainty``
(random first), ``random`` (the baseline). It prints the accuracy per round (mean of ``--seeds``) and
draws the curves as an SVG (no plotting library needed).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from viscurate import Dataset
from viscurate.errors import ViscurateError

#: The held-out samples, as a slice: never selectable, their truth never enters the catalog.
HOLDOUT = "al-holdout"
#: Who the imported labels are from, in the audit trail (``ds.edits``).
ANNOTATOR = "annotator"
#: arm -> (strategy of round 0, strategy of the later rounds).
ARMS = {"coverage+uncertainty": ("cluster_coverage", "uncertainty"),
        "uncertainty": ("random", "uncertainty"),
        "random": ("random", "random")}
TOOLS = ("labelstudio", "cvat")
# bench/labeled_sets.py's names and draw, repeated here on purpose: an example is read, copied and run as one file,
# without the repository's bench/ on the path
FASHION_CLASSES = ("tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle_boot")


# ---- the corpus: images without labels, and the truth that only the annotator knows -------------------

@dataclass
class Corpus:
    """Image files (``truth``: resolved path -> class) that an ingest sees without any label."""

    truth: dict[str, str]
    classes: list[str]
    folder: Path

    def class_of(self, filepath: str) -> str:
        return self.truth[str(Path(filepath).resolve())]


def corpus_from_npz(name: str, out: Path, n: int, *, seed: int = 0) -> Corpus:
    """``n`` images of ``name``'s test split (``fashion_mnist`` or ``mnist``, from ``bench/labeled_sets.py``'s
    ``~/.cache/corpus/labeled/<name>_test.npz`` or ``$CORPUS_DIR``), every class in its share, written as
    ``out/<index>.png``: one flat folder, so the ingest learns no label from it.

    >>> corpus = corpus_from_npz("fashion_mnist", Path("/tmp/al"), 600)              # doctest: +SKIP
    """
    from PIL import Image
    corpus_dir = Path(os.environ.get("CORPUS_DIR", Path.home() / ".cache" / "corpus"))
    path = corpus_dir / "labeled" / f"{name}_test.npz"
    if not path.is_file():
        raise ViscurateError(f"{path} is missing: run `python bench/labeled_sets.py` once (or give --images DIR)")
    data = np.load(path)
    x, y = data["X"], data["y"].astype(np.int64)
    names = list(FASHION_CLASSES) if name == "fashion_mnist" else [str(i) for i in range(10)]
    keep = _stratified(y, n, seed)
    out.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in keep:
        file = out / f"{i:05d}.png"
        if not file.is_file():
            Image.fromarray(x[i]).save(file)
        truth[str(file.resolve())] = names[y[i]]
    return Corpus(truth, sorted(set(truth.values())), out)


def corpus_from_folders(root: Path) -> Corpus:
    """A labeled set as class folders (``root/<class>/<image>``): the folder names are the truth."""
    from viscurate.sources.folder import IMAGE_EXTENSIONS
    truth = {str(p.resolve()): p.parent.name for p in sorted(Path(root).glob("*/*"))
             if p.suffix.lower() in IMAGE_EXTENSIONS}
    if len(set(truth.values())) < 2:
        raise ViscurateError(f"{root} needs a folder per class (at least 2) holding the images")
    return Corpus(truth, sorted(set(truth.values())), Path(root))


def _stratified(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    parts = [rng.choice(np.flatnonzero(y == c), size=round(n * np.mean(y == c)), replace=False) for c in np.unique(y)]
    return np.sort(np.concatenate(parts))


# ---- the catalog: ingested, embedded, the held-out set set aside ----------------------------------------

@dataclass
class Prepared:
    """A built workspace (``home``, dataset ``name``) and the truth by sample id (held-out ones included)."""

    home: Path
    name: str
    truth: dict[str, str]
    holdout: list[str]
    classes: list[str]


def prepare(corpus: Corpus, home: Path, *, name: str = "al", test: int = 500, seed: int = 0) -> Prepared:
    """Ingest and embed the corpus images into dataset ``name`` in ``home`` (no labels), and save ``test``
    random samples as the slice ``al-holdout``. Built once: each arm then runs on its own copy."""
    ds = Dataset.create(name, home=home)
    try:
        ds.add_images(sorted(corpus.truth), progress=False)
        ds.embed(progress=False)
        truth = {d["_id"]: corpus.class_of(d["filepath"]) for d in ds.iter()}
        ids = sorted(truth)
        if test >= len(ids):
            raise ViscurateError(f"the held-out set ({test}) must be smaller than the corpus ({len(ids)})")
        holdout = sorted(np.random.default_rng(seed).choice(ids, size=test, replace=False).tolist())
        ds.save_slice(HOLDOUT, holdout)
    finally:
        ds.close()
    return Prepared(home, name, truth, holdout, corpus.classes)


def fresh_copy(prepared: Prepared, dest: Path) -> Dataset:
    """An open dataset on a copy of the prepared workspace: an arm's labels never reach another arm."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(prepared.home, dest, ignore=shutil.ignore_patterns("*.lock"))
    return Dataset.open(prepared.name, home=dest)


# ---- one round trip through a labeling tool ---------------------------------------------------------------

def export_round(ds: Dataset, slice_name: str, out: Path, tool: str, classes: Sequence[str]) -> Path:
    """The slice as tasks for ``tool``, the head's class (when there is one) as the pre-annotation and every
    class offered to the annotator. Returns the folder written."""
    if tool not in TOOLS:
        raise ViscurateError(f"unknown labeling tool {tool!r}: use one of {', '.join(TOOLS)}")
    options = {"boxes_as": "predictions"} if tool == "labelstudio" else {"media": "symlink"}
    ds.export(out, format=tool, slice=slice_name, label_field="head.label", image_classes=list(classes), **options)
    return out


def annotate_labelstudio(export: Path, answer: dict[str, str]) -> Path:
    """Write the annotator's answers into the exported tasks as Label Studio's JSON export holds them (a
    task ``id``, one annotation whose ``result`` is the ``image_class`` choice); the predictions stay.
    Returns the returned file (beside the export's ``label_config.xml``)."""
    tasks = json.loads((export / "tasks.json").read_text(encoding="utf-8"))
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    for n, task in enumerate(tasks, 1):
        task["id"] = n
        label = answer[task["data"]["viscurate_id"]]
        task["annotations"] = [{
            "id": n, "completed_by": 1, "was_cancelled": False, "ground_truth": False,
            "created_at": now, "updated_at": now, "lead_time": 2.5, "task": n, "project": 1,
            "result": [{"id": f"r{n}", "type": "choices", "from_name": "image_class", "to_name": "image",
                        "origin": "manual", "value": {"choices": [label]}}]}]
    returned = export / "project-1-at-export.json"
    returned.write_text(json.dumps(tasks, indent=1), encoding="utf-8")
    return returned


def annotate_cvat(export: Path, answer: dict[str, str]) -> Path:
    """The annotator's answers as CVAT writes them: each image's ``<tag>`` replaced by a ``manual`` one
    holding the true class. Returns the annotations file given back."""
    tree = ET.parse(export / "annotations.xml")
    for image in tree.getroot().iter("image"):
        for tag in image.findall("tag"):
            image.remove(tag)
        sample_id = image.get("name", "").split("/")[0]
        ET.SubElement(image, "tag", {"label": answer[sample_id], "source": "manual"})
    returned = export / "returned.xml"
    tree.write(returned, encoding="utf-8", xml_declaration=True)
    return returned


def label_round(ds: Dataset, slice_name: str, out: Path, tool: str, truth: dict[str, str],
                classes: Sequence[str]) -> dict:
    """Export, annotate and import one slice; returns the import's counts."""
    export_round(ds, slice_name, out, tool, classes)
    picked = ds.ids({"slices": slice_name})
    answer = {i: truth[i] for i in picked}
    returned = annotate_labelstudio(out, answer) if tool == "labelstudio" else annotate_cvat(out, answer)
    return ds.import_labels(returned, format=tool, by=ANNOTATOR, progress=False)


# ---- the loop --------------------------------------------------------------------------------------------

@dataclass
class Round:
    """One round: the strategy that picked, the labels after it, the held-out accuracy of the head fitted on
    them, and (for a round picked by a head) the picks' entropy beside the pool's median."""

    round: int
    strategy: str
    tool: str
    labeled: int
    accuracy: float
    picked_entropy: float | None = None
    pool_entropy_median: float | None = None
    imported: int = 0
    seconds: float = 0.0


@dataclass
class Run:
    arm: str
    seed: int
    rounds: list[Round] = field(default_factory=list)

    @property
    def accuracies(self) -> list[float]:
        return [r.accuracy for r in self.rounds]


def unlabeled() -> dict:
    """The selectable samples: no label yet, not held out."""
    return {"$and": [{"ground_truth.label": {"$exists": False}}, {"slices": {"$nin": [HOLDOUT]}}]}


def holdout_accuracy(ds: Dataset, prepared: Prepared) -> float:
    """The share of held-out samples whose ``head.label`` is their true class."""
    right = sum((d.get("head") or {}).get("label") == prepared.truth[d["_id"]] for d in ds.iter({"slices": HOLDOUT}))
    return right / len(prepared.holdout)


def _entropies(ds: Dataset, query: dict) -> dict[str, float]:
    return {d["_id"]: d["head"]["entropy"] for d in ds.iter({"$and": [query, {"head.entropy": {"$exists": True}}]})}


def run_loop(ds: Dataset, prepared: Prepared, *, arm: str = "coverage+uncertainty", rounds: int = 5,
             batch: int = 40, seed: int = 0, tool: str | Sequence[str] = "labelstudio", work: Path,
             measure: str = "margin") -> Run:
    """``rounds`` rounds of select -> export -> annotate -> import -> fit_head on ``ds`` (a fresh copy);
    ``tool``: one labeling tool, or one per round (cycled); ``measure``: how ``uncertainty`` ranks (margin by
    default: bench/README.md, "Active learning"). Returns the accuracy per round.

    >>> run = run_loop(fresh_copy(p, tmp / "a"), p, rounds=3, batch=20, work=tmp / "rounds")   # doctest: +SKIP
    >>> run.accuracies                                                                           # doctest: +SKIP
    [0.41, 0.55, 0.63]
    """
    if arm not in ARMS:
        raise ViscurateError(f"unknown arm {arm!r}: use one of {', '.join(ARMS)}")
    tools = [tool] if isinstance(tool, str) else list(tool)
    run = Run(arm, seed)
    for r in range(rounds):
        t0 = time.monotonic()
        strategy = ARMS[arm][0] if r == 0 else ARMS[arm][1]
        slice_name = f"al-round-{r}"
        before = _entropies(ds, unlabeled()) if strategy == "uncertainty" else {}
        options = {"field": "head", "measure": measure} if strategy == "uncertainty" else {}
        selection = ds.select(batch, strategy=strategy, query=unlabeled(), slice=slice_name, seed=seed + r,
                              by=ANNOTATOR, **options)
        picked = [before[i] for i in selection.ids if i in before]
        this_tool = tools[r % len(tools)]
        imported = label_round(ds, slice_name, work / f"{arm}-seed{seed}-round{r}", this_tool, prepared.truth,
                               prepared.classes)
        ds.fit_head()
        run.rounds.append(Round(
            r, strategy, this_tool, ds.count({"ground_truth.label": {"$exists": True}}), holdout_accuracy(ds, prepared),
            picked_entropy=float(np.median(picked)) if picked else None,
            pool_entropy_median=float(np.median(list(before.values()))) if before else None,
            imported=imported["labels"], seconds=time.monotonic() - t0))
    return run


# ---- the report: a table and an SVG ----------------------------------------------------------------------

def mean_curves(runs: Iterable[Run]) -> dict[str, list[float]]:
    """arm -> the accuracy per round, averaged over the seeds."""
    by_arm: dict[str, list[list[float]]] = {}
    for run in runs:
        by_arm.setdefault(run.arm, []).append(run.accuracies)
    return {arm: [statistics.fmean(col) for col in zip(*curves)] for arm, curves in by_arm.items()}


def table(runs: Sequence[Run], batch: int) -> str:
    """Accuracy per round (mean of the seeds, with the spread when there are several), one column per arm."""
    curves = mean_curves(runs)
    spread: dict[str, list[float]] = {}
    for arm in curves:
        per_seed = [r.accuracies for r in runs if r.arm == arm]
        spread[arm] = [statistics.pstdev(col) if len(col) > 1 else 0.0 for col in zip(*per_seed)]
    arms = list(curves)
    lines = ["| round | labels | " + " | ".join(arms) + " |", "|---:|---:|" + "---:|" * len(arms)]
    for r in range(max(len(c) for c in curves.values())):
        cells = [f"{curves[a][r]:.3f} ± {spread[a][r]:.3f}" if r < len(curves[a]) else "" for a in arms]
        lines.append(f"| {r} | {(r + 1) * batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_svg(curves: dict[str, list[float]], path: Path, *, batch: int, title: str = "held-out accuracy") -> Path:
    """The accuracy curves (x: labels, y: accuracy) as a small self-contained SVG."""
    w, h, pad = 640, 400, 56
    colours = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd")
    values = [v for c in curves.values() for v in c] or [0.0, 1.0]
    lo, hi = max(0.0, min(values) - 0.05), min(1.0, max(values) + 0.05)
    n = max(len(c) for c in curves.values()) if curves else 1
    x = lambda i: pad + (w - 2 * pad) * (i / max(1, n - 1))  # noqa: E731
    y = lambda v: h - pad - (h - 2 * pad) * ((v - lo) / max(1e-9, hi - lo))  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
             f'<text x="{w / 2}" y="{h - 16}" text-anchor="middle">labels</text>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f'<text x="{pad - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        parts.append(f'<line x1="{pad}" y1="{y(v):.1f}" x2="{w - pad}" y2="{y(v):.1f}" stroke="#ddd"/>')
    for i in range(n):
        parts.append(f'<text x="{x(i):.1f}" y="{h - pad + 16}" text-anchor="middle">{(i + 1) * batch}</text>')
    for j, (arm, curve) in enumerate(curves.items()):
        colour = colours[j % len(colours)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(curve))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts += [f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>' for i, v in enumerate(curve)]
        parts.append(f'<text x="{w - pad - 150}" y="{pad + 16 * j + 4}" fill="{colour}">{arm}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


# ---- the command line ------------------------------------------------------------------------------------

def experiment(prepared: Prepared, *, arms: Sequence[str], seeds: Sequence[int], rounds: int, batch: int,
               tool: str | Sequence[str], work: Path, measure: str = "margin",
               log: bool = True) -> list[Run]:
    """Every arm for every seed, each on a fresh copy of the prepared catalog."""
    runs = []
    for seed in seeds:
        for arm in arms:
            ds = fresh_copy(prepared, work / "copies" / f"{arm}-{seed}")
            try:
                run = run_loop(ds, prepared, arm=arm, rounds=rounds, batch=batch, seed=seed, tool=tool,
                               work=work / "rounds", measure=measure)
            finally:
                ds.close()
            shutil.rmtree(work / "copies" / f"{arm}-{seed}", ignore_errors=True)
            if log:
                print(f"[al] {arm} seed {seed}: " + " ".join(f"{a:.3f}" for a in run.accuracies), file=sys.stderr)
            runs.append(run)
    return runs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="docs/active-learning.md explains each step.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", choices=("fashion_mnist", "mnist"), default="fashion_mnist",
                     help="a corpus test split from bench/labeled_sets.py (default fashion_mnist)")
    src.add_argument("--images", type=Path, help="your own labeled images as DIR/<class>/<image>")
    p.add_argument("--pool", type=int, default=2000, help="images taken from --dataset, held-out set included")
    p.add_argument("--test", type=int, default=500, help="held-out images (never selectable)")
    p.add_argument("--batch", type=int, default=40, help="images labeled per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seeds", default="0", help="comma-separated seeds; the table shows their mean")
    p.add_argument("--arms", default="coverage+uncertainty,random", help=f"comma-separated, of {', '.join(ARMS)}")
    p.add_argument("--tool", choices=TOOLS, default="labelstudio", help="the labeling tool's file format")
    p.add_argument("--measure", choices=("entropy", "least_confidence", "margin"), default="margin",
                   help="how uncertainty ranks (default margin: on Fashion-MNIST it beat random where entropy did not)")
    p.add_argument("--work", type=Path, default=Path("al-work"), help="where catalogs, exports and the plot go")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work.resolve()
    shutil.rmtree(work / "build", ignore_errors=True)
    corpus = corpus_from_folders(args.images) if args.images else corpus_from_npz(args.dataset, work / "images", args.pool)
    t0 = time.monotonic()
    prepared = prepare(corpus, work / "build", test=args.test)
    print(f"[al] {len(prepared.truth)} images ingested and embedded, {len(prepared.holdout)} held out "
          f"({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    runs = experiment(prepared, arms=args.arms.split(","), seeds=[int(s) for s in args.seeds.split(",")],
                      rounds=args.rounds, batch=args.batch, tool=args.tool, work=work, measure=args.measure)
    print(table(runs, args.batch))
    svg = write_svg(mean_curves(runs), work / "accuracy.svg", batch=args.batch)
    (work / "runs.json").write_text(json.dumps([asdict(r) for r in runs], indent=1), encoding="utf-8")
    print(f"\nplot: {svg}\nper round: {work / 'runs.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
