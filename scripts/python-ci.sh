#!/usr/bin/env bash
# CI's Python step: a fresh virtualenv, `pip install ./python` built against the workspace's
# target dir with the dev profile (it reuses what `cargo test` just compiled), then pytest
# against a local three-party alliance and the example notebook executed headless.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q pytest nbclient nbformat ipykernel pandas matplotlib tqdm
cargo build --locked --bin confide
CARGO_TARGET_DIR="$PWD/target" MATURIN_PEP517_ARGS="--profile dev --locked" \
    "$venv/bin/pip" install -q ./python
export CONFIDE_BIN="$PWD/target/debug/confide" MPLBACKEND=Agg
"$venv/bin/pytest" python/tests -q -p no:cacheprovider
"$venv/bin/python" examples/joint_credit_model.py "$(dirname "$venv")/roc.png"
env -u MPLBACKEND "$venv/bin/python" examples/notebooks/run.py
rm -rf "$(dirname "$venv")"
echo "python step: $((SECONDS - started)) s"
