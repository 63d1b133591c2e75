# Sourced by the scripts: creates the virtual environment $1 (in the repo) and
# installs mtx with the extras $2 into it. MTX_FRESH_VENV=1 rebuilds it.
set -euo pipefail
mtx_venv() {
  local venv="$1" extras="$2" repo
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  if [[ "${MTX_FRESH_VENV:-0}" == 1 ]]; then rm -rf "$repo/$venv"; fi
  if [[ ! -x "$repo/$venv/bin/python" ]]; then
    python3 -m venv "$repo/$venv"
    "$repo/$venv/bin/pip" install --quiet --upgrade pip
  fi
  "$repo/$venv/bin/pip" install --quiet -e "$repo${extras:+[$extras]}"
  echo "$repo/$venv/bin/python"
}
