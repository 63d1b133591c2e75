"""Input pipelines: prepared token records -> shuffled, augmented, batched windows.

    from mtx.data import make_train_iterator, make_eval_iterator
    batches = make_train_iterator(source, "mmt", seq_len=1024, batch_size=8, seed=0)
    batch = next(batches)  # inputs, targets (B, L, F) int32; mask (B, L) bool;
                           # segment_ids, positions (B, L) int32
    state = batches.get_state()  # JSON bytes; a new iterator's set_state(state) resumes

Modules, one concern each: `crop` (a window per representation), `augment`
(transposition, tempo stretch), `window` (one example -> one padded window),
`pipeline` (grain: shard, shuffle, repeat, pack, batch), `state` (the
resumable iterator).
"""

from mtx.data.pipeline import make_eval_iterator, make_train_iterator
from mtx.data.state import BatchIterator
from mtx.data.window import WindowOptions, pad_row

__all__ = ["BatchIterator", "WindowOptions", "make_eval_iterator", "make_train_iterator", "pad_row"]
