"""The write API: upserts, deletes and events accepted over HTTP into the change log.

Not part of `serving`: the read path stays read-only. `serving/service.py` (the composition
root) mounts the routes on the same port (ingest/forward.py), which forward each write to a
process of its own (ingest/process.py: the routes, the writer and the model that embeds a
commit's texts ahead); the only write goes through `pipelines.lance_io.append_changes`,
batched by `ingest.writer`.
"""
