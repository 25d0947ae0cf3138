"""The one reader of the warehouse's own records: the release log and the candidates.

Pipelines (publish, rollback, evaluation) and the service both read through here, with one
set of rules for a missing log, a tag-only warehouse and an unreadable table. Only
pipelines/lance_io.py writes them.
"""
