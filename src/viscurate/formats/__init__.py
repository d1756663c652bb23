"""Labeled dataset formats, one file each with its readers (a file to sample fields and labels) and
writers (sample documents to a file) side by side. They never open a catalog: the ``Dataset`` ingests the
images, calls a reader and stores what it returns, or hands a writer its documents."""
