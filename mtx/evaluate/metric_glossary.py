"""The music metrics by name: which there are, which MusPy defines, what each means (the
formula, shown in report.html's glossary) and its unit. Read by `note_metrics`'
callers, the evaluator's report and the tests; nothing here computes."""

METRIC_NAMES = (
  "pitch_class_entropy",
  "pitch_entropy",
  "scale_consistency",
  "groove_consistency",
  "groove_consistency_meter",
  "polyphony",
  "polyphony_rate",
  "pitch_range",
  "n_pitches_used",
  "n_pitch_classes_used",
  "empty_beat_rate",
  "empty_measure_rate",
  "drum_pattern_consistency",
  "drum_in_pattern_rate",
  "notes_per_beat",
  "mean_duration_beats",
  "n_instruments",
  "n_notes",
)

# The metrics MusPy 0.5.0 defines (`muspy_metrics` calls them as `file_metrics` matches).
MUSPY_METRICS = (
  "pitch_class_entropy",
  "pitch_entropy",
  "scale_consistency",
  "groove_consistency",
  "polyphony",
  "polyphony_rate",
  "pitch_range",
  "n_pitches_used",
  "n_pitch_classes_used",
  "empty_beat_rate",
  "empty_measure_rate",
  "drum_pattern_consistency",
  "drum_in_pattern_rate",
)

METRIC_DEFINITIONS = {
  "pitch_class_entropy": "MusPy's. Shannon entropy of the pitch-class histogram of pitched notes: "
  "-sum_c P(c) log2 P(c), c = pitch mod 12. 0 for one pitch class, log2 12 = 3.585 "
  "for all twelve equally often. NaN without pitched notes.",
  "pitch_entropy": "MusPy's. Shannon entropy of the pitch histogram of pitched notes: "
  "-sum_p P(p) log2 P(p) over MIDI pitches 0..127. NaN without pitched notes.",
  "scale_consistency": "MusPy's. Largest share of pitched notes inside one major or minor scale, over the "
  "24 scales: max_{root, mode} #(notes in scale) / #(notes). NaN without pitched "
  "notes.",
  "groove_consistency": "MusPy's, at measure_resolution = 4 r (one assumed 4/4 meter, as MMT calls it). "
  "With T = length // (4 r) + 1 measures and G_i the binary onset vector of measure i "
  "(4 r positions; onsets of all notes, drums included): "
  "1 - sum_{i<T} hamming(G_i, G_{i+1}) / (4 r (T - 1)). NaN for T < 2.",
  "groove_consistency_meter": "mtx's. The same, with measures cut from the file's time-signature map: a measure "
  "of n/d is n * 4 / d beats; a change starts a new measure at its tick (cutting "
  "the one before short); measures run from tick 0 to the one holding `length`. "
  "Neighbouring measures are compared only when they have the same length L: "
  "1 - sum hamming(G_i, G_{i+1}) / sum L over the compared pairs. Equal to "
  "groove_consistency on a 4/4 file. NaN when no two neighbours have one length.",
  "polyphony": "MusPy's. Mean number of distinct pitched pitches sounding, over the ticks where at "
  "least one sounds: #(pitch, tick) cells on / #(ticks with any cell on). NaN "
  "without pitched notes of nonzero length.",
  "polyphony_rate": "MusPy's, threshold 2. Share of the ticks 0..length-1 at which more than 2 "
  "distinct pitched pitches sound (MusPy's code counts `> threshold`; its docstring "
  "says 'multiple'). NaN for length 0.",
  "pitch_range": "MusPy's. Highest minus lowest pitch of the pitched notes. 0 without notes; "
  "-127 when every note is a drum (MusPy's starting values 0 and 127, kept).",
  "n_pitches_used": "MusPy's. Number of distinct pitches among pitched notes.",
  "n_pitch_classes_used": "MusPy's. Number of distinct pitch classes (pitch mod 12) among pitched notes.",
  "empty_beat_rate": "MusPy's. Share of the length // r + 1 beats that no note touches; a note touches "
  "beats onset // r to offset // r inclusive (drums included). NaN for length 0.",
  "empty_measure_rate": "MusPy's, at measure_resolution = 4 r: the same with 4-beat measures. NaN for "
  "length 0.",
  "drum_pattern_consistency": "MusPy's. Largest drum-in-pattern rate over the duple and triple patterns. NaN "
  "without drum notes (MusPy returns NaN there).",
  "drum_in_pattern_rate": "MusPy's, meter 'duple'. Share of drum notes whose onset mod r falls on the duple "
  "pattern: 0, and multiples of r / 4 and r / 2 where r divides by 4 or 2. NaN "
  "without drum notes.",
  "notes_per_beat": "mtx's. Notes (drums included) per beat of the piece from tick 0 to `length`: "
  "#(notes) / (length / r). NaN for length 0.",
  "mean_duration_beats": "mtx's. Mean of (offset - onset) / r over all notes, drums included. NaN without "
  "notes.",
  "n_instruments": "mtx's. Number of distinct (program, is_drum) pairs among the notes.",
  "n_notes": "mtx's. Number of notes, drums included.",
}

METRIC_UNITS = {
  "pitch_class_entropy": "bits",
  "pitch_entropy": "bits",
  "scale_consistency": "fraction of notes",
  "groove_consistency": "fraction (1 = identical neighbouring measures)",
  "groove_consistency_meter": "fraction (1 = identical neighbouring measures)",
  "polyphony": "pitches",
  "polyphony_rate": "fraction of ticks",
  "pitch_range": "semitones",
  "n_pitches_used": "pitches",
  "n_pitch_classes_used": "pitch classes",
  "empty_beat_rate": "fraction of beats",
  "empty_measure_rate": "fraction of measures",
  "drum_pattern_consistency": "fraction of drum notes",
  "drum_in_pattern_rate": "fraction of drum notes",
  "notes_per_beat": "notes per beat",
  "mean_duration_beats": "beats",
  "n_instruments": "instruments",
  "n_notes": "notes",
}
