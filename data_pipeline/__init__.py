"""TFDS builders and corpus readers that turn MIDI corpora into token records."""
