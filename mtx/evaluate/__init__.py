"""Measuring a trained run: what `mtx-eval` reports, as functions a notebook can call.

One module per analysis, each pure over arrays or note tables where it can be:
`likelihood` (NLL and accuracy over a whole split, windowed), `music_metrics`
(MusPy's metrics and mtx's own, per file and summarized), `distances` (sample set
against ground truth: overlapping areas, a Fréchet distance over symbolic features),
`attention_analysis` (the MMT paper's mean relative attention), `embeddings` (cosine
similarity of learned tables, the octave score), `curves` (a run's TensorBoard
scalars), `plots` (PNG figures) and `report` (report.json and report.html).
"""
