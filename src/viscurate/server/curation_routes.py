"""Curation routes: views, slices, selection and tags, review queues with verdicts, label edits with
their audit trail, the 2-D map and the facets behind the web app's quick filters.

Every route is one :class:`~viscurate.Dataset` call; who made a change is the request's user (the API
key's name, or on loopback the ``X-Viscurate-User`` header, else ``local``).
"""

from typing import Any, Literal

from ..errors import ViscurateError
from .context import MAX_PAGE, ServerContext, request_user
from .defaults import PAGE_SIZE

__all__ = ["register", "MAX_IDS"]

MAX_IDS = 100_000


def register(app: Any, context: ServerContext) -> None:
    """The routes, on ``app``; reads of a query run in its lane (:meth:`ServerContext.query_lane`)."""
    from fastapi import Body, Query, Request
    from pydantic import BaseModel, Field

    from ..curate.edits import ACTIONS, AUTO_LABEL_FIELDS, BOX_FIELDS
    from ..curate.review import REVIEW_KINDS

    dataset, sample, query_lane = context.dataset, context.sample, context.query_lane

    # ---- views and slices ------------------------------------------------------------------------

    class ViewBody(BaseModel):
        q: dict[str, Any] = Field(default_factory=dict, description="the MongoDB query the view runs")
        sort: dict[str, int] | None = Field(None, description='e.g. {"width": -1}')

    @app.get("/v1/datasets/{name}/views")
    def list_views(name: str) -> dict:
        """Saved views: ``{"views": {name: {"query", "sort", "created_at", "created_by"}}}``."""
        return {"views": dataset(name).views()}

    @app.put("/v1/datasets/{name}/views/{view}")
    def save_view(name: str, view: str, request: Request, body: ViewBody = Body(...)) -> dict:
        """Save the query (and sort) as ``view``; it runs again each time it is opened."""
        return {"name": view, **dataset(name).save_view(view, body.q, body.sort, by=request_user(request))}

    @app.delete("/v1/datasets/{name}/views/{view}")
    def delete_view(name: str, view: str) -> dict:
        if not dataset(name).delete_view(view):
            raise ViscurateError(f"no view named {view!r}")
        return {"deleted": view}

    class Target(BaseModel):
        q: dict[str, Any] | None = Field(None, description="the samples matching this query ...")
        ids: list[str] | None = Field(None, max_length=MAX_IDS, description="... or these sample ids")

        def target(self) -> Any:
            if (self.q is None) == (self.ids is None):
                raise ViscurateError("give either q (a query) or ids")
            return self.q if self.q is not None else self.ids

    @app.get("/v1/datasets/{name}/slices")
    def list_slices(name: str) -> dict:
        """Saved slices and their sizes: ``{"slices": {name: samples}}``; a slice's samples are
        ``{"slices": name}``."""
        return {"slices": dataset(name).slices()}

    @app.put("/v1/datasets/{name}/slices/{slice_name}")
    async def save_slice(name: str, slice_name: str, request: Request, body: Target = Body(...)) -> dict:
        """Freeze the samples matching ``q`` (or ``ids``) as a slice (replacing one of that name)."""
        target = body.target()
        return await query_lane(request, body.q).run(
            lambda: {"name": slice_name, "samples": dataset(name).save_slice(slice_name, target)})

    @app.delete("/v1/datasets/{name}/slices/{slice_name}")
    def delete_slice(name: str, slice_name: str) -> dict:
        return {"deleted": slice_name, "samples": dataset(name).delete_slice(slice_name)}

    # ---- selection and tags ----------------------------------------------------------------------

    class SelectBody(BaseModel):
        q: dict[str, Any] = Field(default_factory=dict, description="a MongoDB query")
        limit: int = Field(MAX_IDS, ge=1, le=MAX_IDS)

    @app.post("/v1/datasets/{name}/select")
    async def select(name: str, request: Request, body: SelectBody = Body(...)) -> dict:
        """The ids of every sample matching ``q`` (at most ``limit``), for acting on a whole selection."""
        def run() -> dict:
            ids = dataset(name).ids(body.q)
            return {"length": len(ids), "ids": ids[:body.limit]}
        return await query_lane(request, body.q).run(run)

    class TagBody(Target):
        add: list[str] = Field(default_factory=list, max_length=50)
        remove: list[str] = Field(default_factory=list, max_length=50)

    @app.post("/v1/datasets/{name}/tags")
    async def tag(name: str, request: Request, body: TagBody = Body(...)) -> dict:
        """Add and remove tags on the samples matching ``q`` (or ``ids``)."""
        from ..curate.views import validate_label
        if not body.add and not body.remove:
            raise ViscurateError("give tags to add or remove")
        for t in body.add + body.remove:
            validate_label(t, "tag")
        target = body.target()

        def run() -> dict:
            ds = dataset(name)
            added = ds.tag(target, *body.add) if body.add else 0
            removed = ds.untag(target, *body.remove) if body.remove else 0
            return {"added": added, "removed": removed}
        return await query_lane(request, body.q).run(run)

    # ---- review queues ---------------------------------------------------------------------------

    Kind = Literal[tuple(REVIEW_KINDS)]  # type: ignore[valid-type]

    @app.get("/v1/datasets/{name}/review")
    def review_summary(name: str) -> dict:
        """Every review queue with its open and decided counts."""
        ds = dataset(name)
        from ..curate.review import review_query
        return {"queues": {k: {"open": ds.count(review_query(k, "open")), "decided": ds.count(review_query(k, "decided"))}
                           for k in REVIEW_KINDS}}

    @app.get("/v1/datasets/{name}/review/{kind}")
    def review(name: str, kind: Kind, state: Literal["open", "decided", "all"] = "open",  # type: ignore[valid-type]
               page: int = Query(1, ge=1, le=MAX_PAGE)) -> dict:
        """One page of 25 of a review queue, worst first, with the evidence fields of each sample."""
        return dataset(name).review(kind, state=state, page=page, page_size=PAGE_SIZE)

    class Verdict(Target):
        decision: Literal["accept", "ignore", "reopen"]

    @app.post("/v1/datasets/{name}/review/{kind}")
    def decide(name: str, kind: Kind, request: Request, body: Verdict = Body(...)) -> dict:  # type: ignore[valid-type]
        """Accept (a real problem), ignore (a false alarm) or reopen flagged samples; written as the tag
        ``review:<kind>:accepted`` / ``ignored`` and in the audit trail."""
        return {"changed": dataset(name).decide(kind, body.target(), body.decision, by=request_user(request))}

    # ---- label edits -----------------------------------------------------------------------------

    class Edit(BaseModel):
        action: Literal[ACTIONS]  # type: ignore[valid-type]
        field: Literal[BOX_FIELDS] = "ground_truth.detections"  # type: ignore[valid-type]
        index: int | None = Field(None, ge=0, le=100_000, description="the box (relabel, delete_box)")
        name: str | None = Field(None, min_length=1, max_length=128, description="the class (relabel, add_box)")
        bbox: list[float] | None = Field(None, min_length=4, max_length=4, description="[x, y, w, h] (add_box)")
        expect: dict[str, Any] | None = Field(None, description="what the editor saw in that box, e.g. {\"name\": \"cat\"}")

    @app.post("/v1/datasets/{name}/samples/{sample_id}/edits")
    def edit(name: str, sample_id: str, request: Request, body: Edit = Body(...)) -> dict:
        """Change a box's class, delete a box, draw a missing one, or mark the sample reviewed; recorded with
        who and when. 409 when the box changed since the editor looked. Returns the sample after the edit."""
        sample(name, sample_id)
        return dataset(name).edit(sample_id, body.model_dump(exclude_none=True), by=request_user(request))

    class LabelReview(BaseModel):
        name: str | None = Field(None, min_length=1, max_length=128, description="the right class (relabel)")
        bbox: list[float] | None = Field(None, min_length=4, max_length=4, description="the right [x, y, w, h] (move)")
        expect: dict[str, Any] | None = Field(None, description="what the reviewer saw in that box, e.g. {\"name\": \"cat\"}")

    @app.post("/v1/datasets/{name}/samples/{sample_id}/labels/{field}/{index}/{verdict}")
    def review_label(name: str, sample_id: str, field: Literal[AUTO_LABEL_FIELDS],  # type: ignore[valid-type]
                     index: int, verdict: Literal["accept", "reject", "relabel", "move"], request: Request,
                     body: LabelReview | None = Body(None)) -> dict:
        """Review a model's box: ``accept`` copies it into ``ground_truth.detections``, ``relabel`` (with
        ``name``) and ``move`` (with ``bbox``) copy it corrected, ``reject`` refuses it. The model's box
        stays, marked with ``review`` (accepted, relabeled, moved, corrected, rejected); recorded in the
        audit trail. 409 when the box changed since the reviewer looked or was already reviewed."""
        if not 0 <= index <= 100_000:
            raise ViscurateError("index must be between 0 and 100000")
        given = body or LabelReview()
        if verdict == "relabel" and given.name is None:
            raise ViscurateError("relabel needs the new class: {\"name\": \"...\"}")
        if verdict == "move" and given.bbox is None:
            raise ViscurateError("move needs the new box: {\"bbox\": [x, y, w, h]}")
        edit: dict[str, Any] = {"action": "reject_label" if verdict == "reject" else "accept_label",
                                "field": field, "index": index}
        if verdict != "reject":
            edit.update({k: v for k, v in (("name", given.name), ("bbox", given.bbox)) if v is not None})
        if given.expect is not None:
            edit["expect"] = given.expect
        sample(name, sample_id)
        return dataset(name).edit(sample_id, edit, by=request_user(request))

    @app.get("/v1/datasets/{name}/edits")
    def edits(name: str, sample_id: str | None = None, page: int = Query(1, ge=1, le=MAX_PAGE)) -> dict:
        """The audit trail, newest first, 25 per page (of one sample with ``sample_id``)."""
        found = dataset(name).edits(sample_id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        return {**found, "page": page, "page_size": PAGE_SIZE}

    # ---- the map and the facets ------------------------------------------------------------------

    @app.get("/v1/datasets/{name}/map")
    def embedding_map(name: str, color_by: Literal["cluster.id", "split", "ground_truth.label", "format"] | None = None) -> dict:  # noqa: E501
        """Every placed sample's ``x``, ``y`` in [0, 1] (parallel lists with ``ids``); run the ``map`` job
        first. ``color_by`` adds a value per point."""
        return dataset(name).map_points(color_by=color_by)

    @app.get("/v1/datasets/{name}/facets")
    def facets(name: str) -> dict:
        """What the quick filters offer: object classes, issues, splits, tags, slices (value -> samples)."""
        ds = dataset(name)
        info = ds.info()
        classes, truth = ds.object_classes("object_analysis"), ds.object_classes("ground_truth.detections")
        return {"samples": info.get("samples", 0), "classes": classes, "ground_truth_classes": truth,
                "issues": info.get("issues", {}), "splits": info.get("splits", {}), "tags": info.get("tags", {}),
                "slices": info.get("slices", {}), "width": info.get("width"), "height": info.get("height")}
