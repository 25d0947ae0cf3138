"""The write API: upserts, deletes and events accepted over HTTP into the change log.

Not part of `serving`: the read path stays read-only. `serving/service.py` (the composition
root) mounts these routes on the same port; the only write goes through
`pipelines.lance_io.append_changes`, batched by `ingest.writer`.
"""
