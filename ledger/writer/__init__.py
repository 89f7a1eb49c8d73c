"""Group commit: one writer thread decides queued commands against cached aggregates and saves
each batch in one transaction.

- A caller's future resolves only after its batch has committed (or with its own error).
- A command that breaks an invariant fails alone: it is checked before it changes anything, and
  if a multi-step command fails half-way the batch is decided again without it.
- A batch whose save conflicts (another process wrote first, or recorded the same idempotency
  key) is decided again from freshly loaded state; after a few tries its commands are tried
  alone, each until its deadline.
- A batch whose save fails for any other reason fails only its own callers; nothing that was
  not stored is acknowledged.
- Each idempotent command's first outcome is written with its events, in the same transaction.

One module per job:
- `batcher`: the queue, the writer thread and its commit pipeline (`Writer`);
- `batch`: a batch's items and decision, answering its callers, `StorageError`;
- `replay`: deciding a batch, and replaying it without a command that failed half-way;
- `keys`: idempotency keys and named streams looked up in the store;
- `retry`: refreshing stale cached state, and retrying conflicting saves until the deadline;
- `cache`: the aggregate cache and the snapshot policy;
- `answers`: answers handed to asyncio callers, and GC tuning.
"""

from ledger.writer.answers import tune_gc
from ledger.writer.batch import StorageError
from ledger.writer.batcher import CACHE_SIZE, MAX_BATCH, Writer
from ledger.writer.cache import state_size
from ledger.writer.keys import stream_ids

__all__ = ["CACHE_SIZE", "MAX_BATCH", "StorageError", "Writer", "state_size", "stream_ids", "tune_gc"]
