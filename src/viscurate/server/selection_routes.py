"""Selection routes: pick what to label within a budget (a preview at once, a saved selection as a job),
the saved selections and their curation reports, autotag from a few examples, leak-free splits and the
light classifier head (docs/curation.md).

>>> # POST /v1/datasets/shop/selections {"n": "2%", "strategy": "cluster_coverage", "preview": true}
>>> # -> {"slice", "strategy", "pool", "dropped", "ids", "picks": [{"_id", "rank", "score", "cluster", "reason"}]}
>>> # POST /v1/datasets/shop/selections {"n": 200, "strategy": "k_center", "slice": "to-label"}  -> 202, a job
>>> # GET  /v1/datasets/shop/selections/to-label/report    -> the HTML report (made on first request)

Every route is one :class:`~viscurate.Dataset` call. Work that may take long runs as a job (``select``,
``autotag``, ``split``, ``fit_head``); a preview or an autotag over at most :data:`SYNC_POOL` samples
answers at once, in the heavy-query lane (one at a time, paced while other requests wait).
"""

import hashlib
import json
import re
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

from ..errors import ViscurateError
from .context import ServerContext, request_user
from .errors import NotFound

__all__ = ["register", "SYNC_POOL", "REPORT_POLICY"]

#: the most candidates a preview (or an autotag) scores while the request waits; beyond, it is a job
SYNC_POOL = 20_000
#: a curation report is data: inline styles and SVG, thumbnails as data: URIs, no script, nothing fetched
REPORT_POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'none'; "
                 "base-uri 'none'; form-action 'none'; sandbox")
_SHARE = re.compile(r"^\s*(\d{1,3}(?:\.\d+)?)\s*%\s*$")
MAX_EXAMPLES = 100_000


def _report_name(slice_name: str, stamp: str) -> str:
    """The report's file name: never the slice's own text (no path from a client reaches the disk)."""
    return hashlib.sha256(f"{slice_name}\0{stamp}".encode()).hexdigest()[:32]


def register(app: Any, context: ServerContext) -> None:
    """The routes, on ``app``; the check of a query runs in its lane, a preview in the heavy one."""
    from fastapi import Body, Query, Request
    from fastapi.responses import FileResponse, JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, StringConstraints

    from ..brain.selection.pool import budget_count
    from ..store.workspace import Workspace

    dataset, query_lane, jobs, heavy = context.dataset, context.query_lane, context.jobs, context.admission.heavy
    reports = Path(Workspace(context.home).home) / "server" / "reports"  # made on demand, like the exports
    reports_lock = threading.Lock()  # one report made at a time: two requests for it would write one file twice

    Budget = Annotated[int, Field(ge=1, le=100_000_000)] | Annotated[str, StringConstraints(pattern=_SHARE.pattern)]
    Examples = list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] | dict[str, Any]
    Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
    FieldPath = Annotated[str, StringConstraints(min_length=1, max_length=256)]

    class Body_(BaseModel):
        # a misspelt option would otherwise be dropped in silence and the default used instead
        model_config = ConfigDict(extra="forbid")

    async def check_queries(request: Request, ds: Any, *examples: Any) -> None:
        """Examples given as a query are weighed in the query lane, like ``q``: a bad one is a 400 now."""
        for ex in examples:
            if isinstance(ex, list) and len(ex) > MAX_EXAMPLES:
                raise ViscurateError(f"at most {MAX_EXAMPLES:,} example ids; give a query instead")
            if isinstance(ex, dict):
                await query_lane(request, ex).run(ds.count, ex)

    class SelectOptions(Body_):
        field: FieldPath | None = Field(None, description="balance: the field to balance; uncertainty: the predictions")
        examples: Examples | None = Field(None, description="similarity: sample ids, or a query")
        negatives: Examples | None = Field(None, description="similarity: samples to stay away from")
        measure: Literal["entropy", "least_confidence", "margin"] = "margin"
        weights: dict[Annotated[str, StringConstraints(max_length=64)], Annotated[float, Field(ge=0, le=1e6)]] | None = \
            Field(None, description='weighted: {"cluster_coverage": 0.5, "uncertainty": 0.5}')
        clusters: int | None = Field(None, ge=1, le=100_000,
                                     description="k-means clusters to cover (default: the stored ones, else one per pick)")
        keep_duplicates: bool = False
        keep_leaks: bool = False

    class SelectBody(Body_):
        n: Budget = Field(..., description='how many samples to pick: a count, or a share of the candidates ("2%")')
        strategy: Annotated[str, StringConstraints(max_length=64)] = "cluster_coverage"
        q: dict[str, Any] | None = Field(None, description="pick among the samples matching this query")
        view: Name | None = Field(None, description="... and of this saved view")
        slice: Name | None = Field(None, description="save the picks as this slice (default STRATEGY-N)")
        seed: int = Field(0, ge=0, le=2**32 - 1)
        model: Annotated[str, StringConstraints(max_length=200)] | None = None
        options: SelectOptions = Field(default_factory=SelectOptions)
        preview: bool = Field(False, description="answer the picks, store nothing")

    def candidates(ds: Any, q: dict | None, view: str | None) -> int:
        parts = [p for p in (q, ds.view(view)["query"] if view else None) if p]
        return ds.count({"$and": parts} if len(parts) > 1 else (parts[0] if parts else {}))

    @app.post("/v1/datasets/{name}/selections")
    async def select(name: str, request: Request, body: SelectBody = Body(...)) -> Any:
        """Pick ``n`` samples with a strategy. A preview of at most 20,000 candidates answers at once
        with the selection (ids, picks with their reasons, pool, dropped); a larger preview, and every
        saved selection (the slice, each pick's ``selections`` entry, the recipe), is a job (202)."""
        ds = dataset(name)
        pool = await query_lane(request, body.q).run(candidates, ds, body.q, body.view)
        await check_queries(request, ds, body.options.examples, body.options.negatives)
        n = budget_count(body.n, lambda: pool)
        if n > pool:
            raise ViscurateError(f"the budget ({n:,}) is larger than the {pool:,} candidate(s): lower it or widen "
                                 f"the query")
        o = body.options
        by = request_user(request)

        def run(progress: Any = None) -> Any:
            # the pool's size is known only once it is read: until then the job's total is what is done
            told = False if progress is None else (lambda done, total: progress(done, done if total is None else total))
            return ds.select(n, body.strategy, query=body.q, view=body.view, slice=body.slice, seed=body.seed,
                             model=body.model, field=o.field, examples=o.examples, negatives=o.negatives,
                             measure=o.measure, weights=o.weights, clusters=o.clusters,
                             keep_duplicates=o.keep_duplicates, keep_leaks=o.keep_leaks, write=not body.preview,
                             progress=told, by=by)

        if body.preview and pool <= SYNC_POOL:
            return (await heavy.run(run)).as_dict()
        job = jobs.submit("select", name, run, by=by)
        return JSONResponse(job.as_dict(), status_code=202)

    @app.get("/v1/datasets/{name}/selections")
    def selections(name: str) -> dict:
        """The saved selections: ``{"selections": {slice: recipe}}`` (strategy, n, seed, query, options,
        pool, dropped, ids, created_at, by)."""
        return {"selections": dataset(name).selections()}

    @app.get("/v1/datasets/{name}/selections/{slice_name}/report")
    async def report(name: str, request: Request, slice_name: str, format: Literal["html", "json"] = "html",
                     random_subsets: int = Query(20, ge=2, le=100)) -> Any:
        """A saved selection's curation report (HTML, or its JSON twin with ``format=json``): made on the
        first request and kept until the selection is saved again. Over a pool of more than 20,000
        candidates the first request starts a job (202): ask again once it is done."""
        ds = dataset(name)
        recipe = ds.selections().get(slice_name)
        if recipe is None:
            raise NotFound(f"no selection saved as slice {slice_name!r} in dataset {name!r}")
        # a selection saved again is a new report, even within the second its created_at counts in
        stamp = f"{json.dumps(recipe, sort_keys=True, default=str)}|{random_subsets}"
        folder = reports / _report_name(name, "") / _report_name(slice_name, "")
        html = folder / f"{_report_name(slice_name, stamp)}.html"
        twin = html.with_suffix(".json")  # written after the HTML: once it exists, both are whole

        def make(progress: Any = None) -> None:
            with reports_lock:
                if twin.is_file():
                    return
                folder.mkdir(parents=True, exist_ok=True)
                for old in folder.iterdir():  # the reports of earlier saves of this slice
                    old.unlink(missing_ok=True)
                ds.curation_report(slice_name, html, random_subsets=random_subsets)

        if not twin.is_file():
            if int(recipe.get("pool") or 0) > SYNC_POOL:
                job = jobs.submit("report", name, make, by=request_user(request))
                return JSONResponse(job.as_dict(), status_code=202)
            await heavy.run(make)
        if format == "json":
            return FileResponse(twin, media_type="application/json")
        return FileResponse(html, media_type="text/html", headers={"Content-Security-Policy": REPORT_POLICY,
                                                                     "Cache-Control": "no-cache"})

    class AutotagBody(Body_):
        name: Name = Field(..., description="the concept: scores go to autotag.<name>")
        positive: Examples = Field(..., description="examples of the concept: sample ids, or a query")
        negative: Examples | None = Field(None, description="counter-examples: sample ids, or a query")
        q: dict[str, Any] | None = Field(None, description="score only the samples matching this query")
        model: Annotated[str, StringConstraints(max_length=200)] | None = None
        threshold: float = Field(0.5, ge=0, le=1)
        tag: bool = Field(False, description="tag the samples at or above the threshold with the concept")
        slice: Name | None = Field(None, description="save the samples at or above the threshold as this slice")

    @app.post("/v1/datasets/{name}/autotag")
    async def autotag(name: str, request: Request, body: AutotagBody = Body(...)) -> Any:
        """Fit the concept from its examples and score every sample into ``autotag.<name>`` in [0, 1]:
        the result (top and borderline samples) at once over at most 20,000 samples, else a job (202)."""
        ds = dataset(name)
        await check_queries(request, ds, body.positive, body.negative)
        scope = await query_lane(request, body.q).run(ds.count, body.q or {})

        def run(progress: Any = None) -> Any:
            return ds.autotag(body.name, body.positive, body.negative, model=body.model, query=body.q,
                              threshold=body.threshold, tag=body.name if body.tag else None, slice=body.slice)

        if scope <= SYNC_POOL:
            return (await heavy.run(run)).as_dict()
        job = jobs.submit("autotag", name, run, by=request_user(request))
        return JSONResponse(job.as_dict(), status_code=202)

    class SplitBody(Body_):
        ratios: dict[Name, Annotated[float, Field(gt=0, le=1)]] | None = Field(
            None, description='{"train": 0.8, "val": 0.1, "test": 0.1} (the default)')
        stratify: FieldPath | None = "ground_truth.label"
        group: FieldPath | None = Field(None, description="samples sharing this field's value stay on one side")
        field: FieldPath = "split"
        seed: int = Field(0, ge=0, le=2**32 - 1)
        q: dict[str, Any] | None = None
        near_identical: float = Field(0.95, gt=0, le=1)
        model: Annotated[str, StringConstraints(max_length=200)] | None = None

    @app.post("/v1/datasets/{name}/split", status_code=202)
    async def split(name: str, request: Request, body: SplitBody = Body(...)) -> dict:
        """A job: a train/val/test split that keeps near duplicates, near-identical clusters and groups
        on one side, stratified by a field; its result is the split report."""
        ds = dataset(name)
        if body.q is not None:
            await query_lane(request, body.q).run(ds.count, body.q)  # a bad query is a 400 now, not a failed job
        return jobs.submit("split", name, lambda progress: ds.split(
            body.ratios, stratify=body.stratify, group=body.group, field=body.field, seed=body.seed, query=body.q,
            near_identical=body.near_identical, model=body.model), by=request_user(request)).as_dict()

    class HeadBody(Body_):
        label_field: FieldPath = "ground_truth.label"
        field: FieldPath = "head"
        model: Annotated[str, StringConstraints(max_length=200)] | None = None
        q: dict[str, Any] | None = None

    @app.post("/v1/datasets/{name}/fit-head", status_code=202)
    async def fit_head(name: str, request: Request, body: HeadBody = Body(...)) -> dict:
        """A job: fit a light classifier on the embeddings of the labeled samples and write its
        predictions (``head``: label, confidence, margin, entropy, probabilities) on every sample."""
        ds = dataset(name)
        if body.q is not None:
            await query_lane(request, body.q).run(ds.count, body.q)
        return jobs.submit("fit_head", name, lambda progress: ds.fit_head(
            body.label_field, field=body.field, model=body.model, query=body.q), by=request_user(request)).as_dict()
