"""Dataset routes: the datasets, Cortex-style search with ``q`` and ``page``, one sample, its similar
samples, the issue counts and the duplicate groups. Each route maps to one library call.

>>> # POST /v1/datasets/photos/search {"q": {"issues": "blurry"}, "page": 2}
>>> # -> {"length": 130, "page": 2, "page_size": 25, "results": [...]}
"""

from typing import Any

from ..errors import ViscurateError
from .analyze import SCRATCH_DATASET
from .context import MAX_PAGE, ServerContext
from .defaults import PAGE_SIZE

__all__ = ["register"]


def register(app: Any, context: ServerContext) -> None:
    """The routes, on ``app``."""
    from fastapi import Body, Request
    from pydantic import BaseModel, Field

    from ..dataset import Dataset

    home = context.home
    dataset, sample = context.dataset, context.sample

    class Search(BaseModel):
        q: dict[str, Any] = Field(default_factory=dict, description="a MongoDB query")
        page: int = Field(1, ge=1, le=MAX_PAGE, description="1-based page of 25 results")
        sort: dict[str, int] | None = Field(None, description='e.g. {"width": -1}')

    @app.get("/v1/datasets")
    def list_datasets() -> dict:
        """The datasets (not the analyze scratch one) and ``recent``: the one written last, which the web
        app opens on."""
        from .web import most_recent
        names = [n for n in Dataset.list(home) if n != SCRATCH_DATASET]
        return {"datasets": names, "length": len(names), "recent": most_recent(home, names)}

    @app.get("/v1/datasets/{name}")
    def dataset_info(name: str) -> dict:
        info = dataset(name).info()
        info.pop("directory", None)  # the server's file layout is not the client's business
        return info

    @app.post("/v1/datasets/{name}/search")
    async def search(name: str, request: Request, body: Search = Body(...)) -> dict:
        """Cortex's search: a MongoDB query ``q`` and a ``page`` of 25; ``length`` is the total count."""
        def run() -> dict:
            found = dataset(name).find(body.q, page=body.page, page_size=PAGE_SIZE, sort=body.sort)
            out = {"length": found["length"], "page": body.page, "page_size": PAGE_SIZE,
                   "results": found["results"]}
            if found.get("warnings"):  # fields no sample has ("isues": did you mean "issues"?)
                out["warnings"] = found["warnings"]
            return out
        return await context.query_lane(request, body.q, body.sort).run(run)

    @app.get("/v1/datasets/{name}/samples/{sample_id}")
    def get_sample(name: str, sample_id: str) -> dict:
        return sample(name, sample_id)

    @app.get("/v1/datasets/{name}/samples/{sample_id}/similar")
    def similar(name: str, sample_id: str, k: int = 10, model: str | None = None) -> dict:
        """The ``k`` (1-100) most similar samples by embedding (``viscurate embed`` or ``label`` first)."""
        if not 1 <= k <= 100:
            raise ViscurateError("k must be between 1 and 100")
        sample(name, sample_id)
        hits = dataset(name).similar(sample_id, k=k, model=model)
        return {"results": [{"_id": h["_id"], "similarity": h["similarity"]} for h in hits]}

    @app.get("/v1/datasets/{name}/issues")
    def issues(name: str) -> dict:
        """How many samples carry each issue flag (``{"issues": {"near_duplicate": 12, ...}}``)."""
        info = dataset(name).info()
        return {"issues": info.get("issues", {}), "samples_with_issues": info.get("samples_with_issues", 0),
                "samples": info.get("samples", 0)}

    @app.get("/v1/datasets/{name}/duplicates")
    def duplicate_groups(name: str, page: int = 1) -> dict:
        """Stored duplicate groups (``viscurate duplicates`` first), 25 per page, largest first: each the
        representative's ``_id`` and its members with the reason they are in the group."""
        if not 1 <= page <= MAX_PAGE:
            raise ViscurateError(f"page must be between 1 and {MAX_PAGE}")
        groups: dict[str, list[dict]] = {}
        for doc in dataset(name).iter({"duplicates.group": {"$exists": True}}):
            dup = doc.get("duplicates") or {}
            groups.setdefault(str(dup.get("group")), []).append(
                {"_id": doc["_id"], **{k: v for k, v in dup.items() if k != "group"}})
        ordered = sorted(groups.items(), key=lambda g: (-len(g[1]), g[0]))
        chunk = ordered[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        return {"length": len(ordered), "page": page, "page_size": PAGE_SIZE,
                "results": [{"representative": rep, "members": members} for rep, members in chunk]}
