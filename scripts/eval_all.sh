#!/usr/bin/env bash
# Run scripts/eval.py on every set in $EVAL_DIR (default ../shared/eval) in every retrieval mode,
# collect the JSON lines in scripts/eval_results.jsonl and print a Markdown table for the README.
#
#   scripts/eval_all.sh                 # all sets, all modes
#   MODES=dense scripts/eval_all.sh     # one mode (the default: all)
#   EVAL_DIR=/data/eval scripts/eval_all.sh
#   MIXED= scripts/eval_all.sh          # without the mixed-folder sets
#
# Limits keep a run tractable on 2 cores; the table's "queries" column shows what was used.
set -euo pipefail

cd "$(dirname "$0")/.."
EVAL_DIR="${EVAL_DIR:-../shared/eval}"
MODES="${MODES:-all}"
OUT="scripts/eval_results.jsonl"

limit_for() {
  case "$1" in
    jsquad_valid) echo "--limit 1000" ;;
    tatoeba_en-ja) echo "--limit 500" ;;
    *) echo "" ;;
  esac
}

[ -d "$EVAL_DIR" ] || { echo "error: no eval sets at $EVAL_DIR (set EVAL_DIR)" >&2; exit 1; }

: > "$OUT"
failed=0
for set_dir in "$EVAL_DIR"/*/; do
  set_dir="${set_dir%/}"
  name="$(basename "$set_dir")"
  if [ -f "$set_dir/sts.jsonl" ]; then
    modes=(none)
  else
    read -r -a modes <<< "$MODES"
  fi
  for mode in "${modes[@]}"; do
    mode_args=()
    [ "$mode" = none ] || mode_args=(--mode "$mode")
    echo "== $name ${mode_args[*]}" >&2
    # shellcheck disable=SC2046  # the limit is word-split on purpose
    if ! python scripts/eval.py "$set_dir" "${mode_args[@]}" $(limit_for "$name") \
      | grep '^{' >> "$OUT"; then
      echo "eval_all: $name ${mode_args[*]} failed; continuing" >&2
      failed=1
    fi
  done
done

# Mixed folders: one set's questions over its documents plus another language's documents
# (scripts/mixed_set.py), first 1,000 questions each. MIXED="" skips them.
MIXED="${MIXED-ntrex_en-ja:xquad_en jsquad_valid:xquad_en xquad_en:jsquad_valid}"
for pair in $MIXED; do
  query_set="$EVAL_DIR/${pair%%:*}" distractors="$EVAL_DIR/${pair#*:}"
  [ -d "$query_set" ] && [ -d "$distractors" ] || continue
  set_dir="$(python scripts/mixed_set.py "$query_set" "$distractors")"
  # Both orders of a pair hold the same documents: one index serves them.
  shared="$(printf '%s\n' "${pair%%:*}" "${pair#*:}" | sort | paste -sd+)"
  index_dir="$HOME/.cache/indexer/eval/mixed-$shared"
  read -r -a modes <<< "$MODES"
  for mode in "${modes[@]}"; do
    echo "== $(basename "$set_dir") --mode $mode" >&2
    if ! python scripts/eval.py "$set_dir" --mode "$mode" --limit 1000 --index-dir "$index_dir" \
      | grep '^{' >> "$OUT"; then
      echo "eval_all: $(basename "$set_dir") --mode $mode failed; continuing" >&2
      failed=1
    fi
  done
done

python scripts/eval.py --table "$OUT"
exit "$failed"
