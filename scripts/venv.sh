# shellcheck shell=bash
# Sourced by the scripts: creates the virtual environment $1 (in the repo) and
# installs mtx with the extras $2 into it. MTX_FRESH_VENV=1 rebuilds it.
set -euo pipefail
mtx_venv() {
  local venv="$1" extras="$2" repo
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  if [[ "${MTX_FRESH_VENV:-0}" == 1 ]]; then rm -rf "${repo:?}/${venv:?}"; fi
  if [[ ! -x "$repo/$venv/bin/python" ]]; then
    python3 -m venv "$repo/$venv"
    "$repo/$venv/bin/pip" install --quiet --upgrade pip
  fi
  "$repo/$venv/bin/pip" install --quiet -e "$repo${extras:+[$extras]}"
  echo "$repo/$venv/bin/python"
}

# The benches' peer venv (.venv-bench): mtx plus the tokenizers it is measured
# against. Prints the venv's python on the last line.
mtx_bench_venv() {
  local python
  python="$(mtx_venv .venv-bench "" | tail -n 1)"
  "$python" -m pip install --quiet \
    miditok==3.1.0 muspy==0.5.0 symusic==0.6.0 miditoolkit==1.0.1
  echo "$python"
}
