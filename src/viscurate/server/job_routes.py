"""Job routes: start long work on a dataset (ingest of image URLs, label, embed, analyze, map, export),
watch its progress, fetch an export's file when it is done.

>>> # POST /v1/datasets/photos/jobs {"kind": "export", "q": {"tags": "reviewed"}, "format": "coco"}
>>> # POST /v1/datasets/photos/jobs {"kind": "ingest", "urls": ["https://example.org/cat.jpg"]}
>>> # GET  /v1/jobs/<id>            -> {"state": "running", "progress": {"done": 200, "total": 1000, "rate": 812.0}}
>>> # GET  /v1/jobs/<id>/download   -> the file, once "state" is "done"
"""

from pathlib import Path
from typing import Any, Callable, Literal

from ..errors import ViscurateError
from .context import ServerContext, request_user
from .errors import NotFound

__all__ = ["register"]

#: Formats written as one file; every other label format writes a folder, served as a zip of it.
_SUFFIX = {"jsonl": ".jsonl", "coco": ".json", "urllist": ".parquet"}
ExportFormat = Literal["jsonl", "coco", "yolo", "voc", "cvat", "labelstudio", "huggingface", "csv", "parquet",
                       "urllist", "imagefolder"]


def _zip_folder(folder: Path) -> Path:
    """``folder`` as ``folder.zip`` beside it, the folder removed: the label files only, never the images
    the export linked (a download must not copy a whole dataset onto the server's disk)."""
    import shutil
    import zipfile
    out = folder.with_suffix(".zip")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                z.write(path, path.relative_to(folder).as_posix())
    shutil.rmtree(folder)
    return out


def register(app: Any, context: ServerContext) -> None:
    """The routes, on ``app``; exports are written to ``context.exports``; the check of a job's query
    runs in its lane (:meth:`ServerContext.query_lane`)."""
    from fastapi import Body, Request
    from fastapi.responses import FileResponse
    from pydantic import BaseModel, Field

    dataset, query_lane, jobs, exports = context.dataset, context.query_lane, context.jobs, context.exports
    files: dict[str, Path] = {}  # job id -> its export file (never a client's path)

    class JobBody(BaseModel):
        kind: Literal["ingest", "label", "embed", "analyze", "map", "export"]
        urls: list[str] | None = Field(None, max_length=100_000, description="ingest: image URLs (http/https "
                                       "only: a client never names the server's files); private addresses only "
                                       "when the server was started with --allow-private-urls")
        q: dict[str, Any] | None = Field(None, description="limit the work to the samples matching this query")
        model: str | None = Field(None, max_length=200, description="label: roles/models; embed, analyze, map: the embedder")
        format: ExportFormat = Field("jsonl", description="export: the format (jsonl and coco: one file; the "
                                     "others: a zip of the format's folder, labels without the images)")
        field: Literal["ground_truth.detections", "object_analysis", "predictions"] | None = Field(
            None, description="export as coco: the boxes to write (default: the ground truth if a sample has "
                              "some, else object_analysis)")

    def job_or_404(job_id: str) -> Any:
        try:
            return jobs.get(job_id)
        except KeyError:
            raise NotFound(f"no job {job_id!r}") from None

    @app.post("/v1/datasets/{name}/jobs", status_code=202)
    async def start_job(name: str, request: Request, body: JobBody = Body(...)) -> dict:
        """Queue a job; answers at once with its id (jobs run one at a time, in order)."""
        return await query_lane(request, body.q).run(submit, name, request, body)

    def submit(name: str, request: Request, body: Any) -> dict:
        ds = dataset(name)
        if body.q is not None:
            ds.count(body.q)  # a bad query is the client's 400 now, not a failed job later
        q = body.q
        job_id = jobs.new_id()
        if body.kind == "ingest":
            _check_urls(body.urls)

        def run(progress: Callable[[int, int], None]) -> Any:
            if body.kind == "ingest":  # the operator's choice about private addresses, never the request's
                return ds.add_images(body.urls, allow_private_urls=context.analyze_limits.allow_private_urls,
                                     progress=lambda done, total: progress(done, done if total is None else total))
            if body.kind == "label":
                return ds.label(models=body.model, query=q, progress=progress)
            if body.kind == "embed":
                return ds.embed(body.model, query=q, progress=progress)
            if body.kind == "map":
                return ds.compute_map(model=body.model, query=q)
            if body.kind == "analyze":
                done: list[str] = []

                def step(stage: str) -> None:
                    done.append(stage)
                    progress(len(done) - 1, len(done))
                return {k: (v.as_dict() if hasattr(v, "as_dict") else v)
                        for k, v in ds.analyze(model=body.model, progress=step).items()}
            exports.mkdir(parents=True, exist_ok=True)
            out = exports / f"{job_id}{_SUFFIX.get(body.format, '')}"
            # the images stay on the server: a download carries the labels (YOLO's layout needs its images)
            from ..formats.registry import get_format
            media = {"yolo": "symlink", "imagefolder": "symlink"}.get(body.format, "none")
            takes_media = body.format not in _SUFFIX and get_format(body.format).writer_takes("media")
            result = ds.export(out, format=body.format, query=q, field=body.field, progress=progress,
                               media=media if takes_media else None)
            files[job_id] = out if body.format in _SUFFIX else _zip_folder(out)
            return {**result, "format": body.format, "download": f"/v1/jobs/{job_id}/download"}

        return jobs.submit(body.kind, name, run, by=request_user(request), job_id=job_id).as_dict()

    @app.get("/v1/jobs")
    def list_jobs(dataset_name: str | None = None) -> dict:
        """Jobs, newest first (``dataset_name`` filters)."""
        return {"jobs": [j.as_dict() for j in jobs.list(dataset_name)]}

    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: str) -> dict:
        """A job's state and progress: ``done`` of ``total``, ``rate`` per second, ``result`` or ``error``."""
        return job_or_404(job_id).as_dict()

    @app.get("/v1/jobs/{job_id}/download")
    def download(job_id: str) -> FileResponse:
        """An export job's file."""
        job = job_or_404(job_id)
        path = files.get(job_id)
        if job.kind != "export" or job.state != "done" or path is None or not path.is_file():
            raise ViscurateError(f"job {job_id!r} has no file to download (kind {job.kind}, state {job.state})")
        return FileResponse(path, filename=f"{job.dataset}{path.suffix}")


def _check_urls(urls: list[str] | None) -> None:
    """An ingest job takes http(s) URLs and nothing else: a path would name a file of the server."""
    from ..sources.urls import is_url
    if not urls:
        raise ViscurateError("an ingest job needs 'urls': a list of http(s) image URLs")
    wrong = [u for u in urls if not isinstance(u, str) or not is_url(u.strip())]
    if wrong:
        raise ViscurateError(f"an ingest job takes http(s) URLs only, not {wrong[0]!r} "
                             f"({len(wrong)} such entr{'y' if len(wrong) == 1 else 'ies'})")
