#!/usr/bin/env bash
# Regenerate requirements/lock.txt (`make lock`): every runtime, test and dev dependency and the
# build requirements of the editable install, pinned with the sha256 of every file PyPI serves.
# The project itself is dropped from the output: the `dev` extra names it (`[test]`), and it is
# installed from the working tree by `make install` (`pip install --no-deps -e .`).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
out=requirements/lock.txt
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
CUSTOM_COMPILE_COMMAND="make lock" "$VENV/bin/pip-compile" --quiet --generate-hashes \
  --allow-unsafe --extra dev --build-deps-for editable --strip-extras \
  --no-emit-index-url --no-emit-find-links --output-file "$tmp" pyproject.toml "$@"
# Drop the self-reference (and pip-compile's warning about it being unhashed).
grep -v -e '^zoho-concur-connector @' -e '^    # via file://' \
  -e '^# WARNING: pip install will require' -e '^# Consider using a hashable URL' "$tmp" > "$out"
echo "wrote $out ($(grep -c '==' "$out") pinned packages)"
