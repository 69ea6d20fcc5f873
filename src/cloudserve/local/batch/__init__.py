"""Local batch prediction: streamed, chunked, in worker processes, resumable.

The input (CSV with a header, JSON Lines, or Parquet) is read in chunks of
``LocalConfig.batch_chunk_rows`` rows (rounded to whole ``BatchSpec.batch_size`` batches), so
memory stays flat whatever the file size. Chunks are predicted by ``BatchSpec.max_concurrency``
worker processes, each loading the model once. Every input row gets exactly one output: a
prediction (``row``, ``prediction``) in ``predictions.<format>``, or an error record (``row``,
``error``) in ``errors.<format>``. Rows are numbered from 0 in input order. A chunk that fails as
a whole is bisected until the bad rows are isolated, so one bad row costs only itself.

The job's plan (chunk size, input checksum) and every finished chunk (row range, counts, part
checksums) are stored in the state database; a job whose runner was killed resumes by that plan
(:mod:`cloudserve.local.batch.runner` says how). Modules: ``reading`` (input chunks),
``parts`` (durable part files and assembly), ``runner`` (the runner process), ``jobs`` (submit,
resume, read).
"""

from cloudserve.local.batch.jobs import read_job, resume, submit
from cloudserve.local.batch.runner import run

__all__ = ["read_job", "resume", "run", "submit"]
