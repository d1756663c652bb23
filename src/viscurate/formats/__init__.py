"""Labeled dataset formats, one file each (importer and, later, exporter side by side)."""
