"""Same-run A/B of two checkouts: the training step and cached sampling, interleaved.

    git worktree add /tmp/before <commit>
    python -m bench.ab_trees /tmp/before .

Each round runs every row in both trees, alternating which goes first; the median over 3
rounds is printed per row (step seconds: lower is better; sampling rows/s: higher). Each
tree runs with PYTHONPATH at its own root, so the installed mtx does not mask it.
"""

import json
import os
import statistics
import subprocess
import sys

TREES = {"before": os.path.abspath(sys.argv[1]), "after": os.path.abspath(sys.argv[2])}
PY = sys.executable
CMDS = {
  "train step (tiny, 8x256)": [
    "-m",
    "bench.train",
    "--child",
    "tiny",
    "--batch",
    "8",
    "--seq",
    "256",
    "--steps",
    "15",
    "--warmup",
    "3",
  ],
  "train step (mmt-size, 2x512)": [
    "-m",
    "bench.train",
    "--child",
    "mmt",
    "--batch",
    "2",
    "--seq",
    "512",
    "--steps",
    "4",
    "--warmup",
    "1",
  ],
  "cached sampling (mmt-size, 4x256)": [
    "-m",
    "bench.sample",
    "--child",
    "mtx-cached",
    "--batch",
    "4",
    "--length",
    "256",
  ],
}
res = {k: {t: [] for t in TREES} for k in CMDS}
for rnd in range(3):
  for name, args in CMDS.items():
    for tree, path in TREES.items() if rnd % 2 == 0 else reversed(TREES.items()):
      env = dict(os.environ, PYTHONPATH=path)
      out = subprocess.run([PY, *args], cwd=path, env=env, capture_output=True, text=True)
      line = [l for l in out.stdout.splitlines() if l.startswith("{")]
      if not line:
        print(name, tree, "FAILED", out.stderr[-800:])
        continue
      d = json.loads(line[-1])
      v = d.get("step_seconds") or d.get("rows_per_second") or d
      res[name][tree].append(v)
      print(rnd, name, tree, v if not isinstance(v, dict) else list(v)[:20], flush=True)
for name, trees in res.items():
  print(
    name, {t: statistics.median(v) for t, v in trees.items() if v and not isinstance(v[0], dict)}
  )
