"""Label: auto-label every sample with the offline models, incrementally, in a crash-safe process pool.

>>> from viscurate.pipeline.label import label                                   # doctest: +SKIP
>>> with Catalog(directory, "pets", write=True) as cat:                           # doctest: +SKIP
...     report = label(cat)                       # detector, classifier/embedder, faces, poses
...     print(report.processed, report.images_per_s, report.model_seconds)

For each sample (``corrupt`` and ``missing`` ones are skipped and left alone; a file gone since ingest is
flagged ``missing``, not failed) whose labels were not made by the current
model versions, a worker process decodes the upright RGB image (EXIF orientation applied; longest side
capped at ``max_side``, default 1024, for speed; boxes are reported in pixels of the *original* upright
image) and runs what that sample still needs:

- **detector** on the image and, when it found a box to write, on the test-time augmentation views the
  quality model was fitted with (:data:`viscurate.models.quality.TTA_PASSES`: a 0.75x shrunk copy padded
  back to the image's size; the augmented boxes are mapped back): ``object_analysis`` = the detections of the plain image, each with
  ``label_quality_estimation`` (LQE), the ``signals`` it was computed from and the ``model`` key; the
  sample's ``label_quality_estimation`` summarizes its boxes. The classifier also tags each box's crop,
  as evidence for the LQE;
- **classifier**: top-5 ImageNet tags -> ``classifications``;
- **embedder**: the image embedding -> the catalog's vectors (``write_vectors``), its key added to
  ``embeddings``; and a crop of every box (``object_analysis`` and ``ground_truth.detections``) embedded
  as box-level vectors (``field`` + ``idxs``);
- **face** -> ``face_analysis`` (boxes and 6 keypoints); **pose** on the person boxes ->
  ``pose_estimation`` (17 COCO keypoints ``[x, y, score]``).

Which model made what is recorded in ``models.<field>`` (``name@version``); a sample is processed again
only for the roles whose model changed (or with ``force``). A detector re-run re-runs pose too (it looks in
the person boxes) and re-embeds the box crops.

Results are written every ``batch_size`` samples: one ``catalog.write(mode="merge")`` transaction that
replaces exactly the label fields, then the vectors. A run killed at any point loses at most its last
batch; the next run continues where it stopped (a batch whose vectors did not make it is re-embedded:
the plan checks the vectors themselves, not only the fields). A failing image is written with a
``label_error`` and never stops the run; it is tried again by the next run.

After the run, a dataset-wide pass compares every box's embedding with its nearest neighbours
(``quality.neighbour_agreement``) and refines each box's LQE and each image's LQE with it
(``quality.refine_with_neighbours``), always starting from the box's own (unrefined) estimate, kept in
``signals``, so the pass gives the same answer however often it runs (and only once the dataset has
enough boxes for neighbours to mean something, see :data:`~viscurate.pipeline.label.neighbours.MIN_PREDICTED_BOXES_PER_NEIGHBOUR`).

Vectors and rewrites: ``Catalog.write(mode="merge")`` keeps a sample's vectors unless its bytes changed
or a box list got other boxes; each batch writes its documents, then its new vectors (two transactions;
if a run dies between them, the next run's plan sees the missing vectors and embeds those samples again).

The package, one module per job: :mod:`.choose` (which models), :mod:`.planning` (which samples need which
roles), :mod:`.worker` and :mod:`.infer` (the worker side), :mod:`.write` (documents and vectors into
the catalog), :mod:`.neighbours` (the neighbour pass), :mod:`.run` (the runner), :mod:`.report`.

See ``docs/labeling.md``.
"""
from __future__ import annotations

from .choose import Selection, select_models
from .fields import BOX_FIELDS, LABEL_KEYS, MODEL_FIELD, ROLES, lqe_version
from .neighbours import NEIGHBOURS, refine
from .planning import plan
from .report import LabelReport, StageReport
from .run import DEFAULT_BATCH_SIZE, DEFAULT_ITEM_TIMEOUT, default_workers_threads, label, run_stage
from .worker import DEFAULT_MAX_SIDE

__all__ = ["BOX_FIELDS", "DEFAULT_BATCH_SIZE", "DEFAULT_ITEM_TIMEOUT", "DEFAULT_MAX_SIDE", "LABEL_KEYS",
           "LabelReport", "MODEL_FIELD", "NEIGHBOURS", "ROLES", "Selection", "StageReport",
           "default_workers_threads", "label", "lqe_version", "plan", "refine", "run_stage", "select_models"]
