"""The server's default limits, in a module that imports nothing, so that ``viscurate serve --help``
shows them without loading the server. Each is documented in docs/server.md ("Budgets")."""

PAGE_SIZE = 25  # results per page of every listing the REST API pages (search, review, edits...)
MAX_BODY_BYTES = 2**20  # a JSON body: a query, an edit, a view are a few kB in practice
MAX_IDS_BODY_BYTES = 4 * 2**20  # 100,000 sample ids (curation_routes.MAX_IDS) of 24 characters
MAX_UPLOAD_BYTES = 50 * 2**20  # an image /v1/analyze takes, uploaded or fetched
MAX_PIXELS = 50_000_000  # a 50 MB file can still declare gigapixels (a decompression bomb)
FETCH_DEADLINE_S = 30.0  # a whole URL fetch
HEAVY_THREADS = 1  # heavy queries at once (server.admission)
HEAVY_SHARE = 0.25  # of the time, while other requests are in flight
HEAVY_QUEUE = 64  # heavy queries that may wait
LANE_WAIT_S = 30.0  # the longest a request waits in a lane
ANALYSIS_THREADS = 2  # /v1/analyze at once
