"""Curation: saved views and slices, review decisions, label edits with an audit trail."""
