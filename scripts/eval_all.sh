#!/usr/bin/env bash
# Run `python -m scripts.eval` on every set in $EVAL_DIR (default ../shared/eval) in every
# retrieval mode, collect the stamped JSON lines in scripts/eval_results.jsonl and print a Markdown
# table for the README.
#
#   scripts/eval_all.sh                 # all sets, all modes
#   MODES=dense scripts/eval_all.sh     # one mode (the default: all)
#   EVAL_DIR=/data/eval scripts/eval_all.sh
#   MIXED= scripts/eval_all.sh          # without the mixed-folder sets
#   REVERSED= scripts/eval_all.sh       # without the reversed sentence-pair sets
#   ANN=always MODES=hybrid scripts/eval_all.sh
#                                       # the approximate vector path forced on (a copy of)
#                                       # every index; results in scripts/eval_ann-always_results.jsonl
#                                       # (ANN=exact: the same copies with exact search)
#   CHUNKS=pooled scripts/eval_all.sh   # chunks pooled from their section (index build
#                                       # --chunks pooled), in copies of every index; results
#                                       # in scripts/eval_chunks-pooled_results.jsonl
#   PASSAGES=int8 scripts/eval_all.sh   # chunk and section vectors from the model's int8 copy
#                                       # (index build --passage-precision int8), in copies of
#                                       # every index; results in scripts/eval_passages-int8_results.jsonl
#   SECTIONS=averaged scripts/eval_all.sh
#                                       # section vectors averaged from their chunks (index build
#                                       # --sections averaged), in copies of every index; results
#                                       # in scripts/eval_sections-averaged_results.jsonl
#
# Limits keep a run tractable on 2 cores; the table's "queries" column shows what was used.
set -euo pipefail

cd "$(dirname "$0")/.."
EVAL_DIR="${EVAL_DIR:-../shared/eval}"
MODES="${MODES:-all}"
ANN="${ANN:-}"
CHUNKS="${CHUNKS:-}"
PASSAGES="${PASSAGES:-}"
SECTIONS="${SECTIONS:-}"
OUT="scripts/eval_results.jsonl"
variant_args=()
if [ -n "$ANN" ]; then
  OUT="scripts/eval_ann-${ANN}_results.jsonl"
  variant_args+=(--ann "$ANN")
fi
if [ -n "$CHUNKS" ]; then
  OUT="${OUT%_results.jsonl}_chunks-${CHUNKS}_results.jsonl"
  variant_args+=(--chunks "$CHUNKS")
fi
if [ -n "$PASSAGES" ]; then
  OUT="${OUT%_results.jsonl}_passages-${PASSAGES}_results.jsonl"
  variant_args+=(--passages "$PASSAGES")
fi
if [ -n "$SECTIONS" ]; then
  OUT="${OUT%_results.jsonl}_sections-${SECTIONS}_results.jsonl"
  variant_args+=(--sections "$SECTIONS")
fi

# "--limit N" for a set by name, or nothing (the limits live in scripts/common.py).
limit_for() {
  python -m scripts.common limit "$1"
}

# scripts/eval.py with the arguments after LABEL, its stamped result lines appended to $OUT; a
# set that fails is reported and the run goes on.
evaluate() {
  local label="$1"
  shift
  echo "== $label" >&2
  if ! python -m scripts.eval "$@" "${variant_args[@]}" | grep '^{' >> "$OUT"; then
    echo "eval_all: $label failed; continuing" >&2
    failed=1
  fi
}

[ -d "$EVAL_DIR" ] || { echo "error: no eval sets at $EVAL_DIR (set EVAL_DIR)" >&2; exit 1; }

read -r -a retrieval_modes <<< "$MODES"
: > "$OUT"
failed=0
for set_dir in "$EVAL_DIR"/*/; do
  set_dir="${set_dir%/}"
  name="$(basename "$set_dir")"
  if [ -f "$set_dir/sts.jsonl" ]; then
    evaluate "$name" "$set_dir"
    continue
  fi
  for mode in "${retrieval_modes[@]}"; do
    # shellcheck disable=SC2046  # the limit is word-split on purpose
    evaluate "$name --mode $mode" "$set_dir" --mode "$mode" $(limit_for "$name")
  done
done

# Mixed folders: one set's questions over its documents plus another language's documents
# (scripts/mixed_set.py), first 1,000 questions each. MIXED="" skips them.
MIXED="${MIXED-ntrex_en-ja:xquad_en jsquad_valid:xquad_en xquad_en:jsquad_valid}"
# The indexer cache ($INDEXER_CACHE_DIR, else ~/.cache/indexer), where scripts/eval.py keeps its indexes.
cache="$(python -c 'from indexer import config; print(config.cache_dir())')"
for pair in $MIXED; do
  query_set="$EVAL_DIR/${pair%%:*}" distractors="$EVAL_DIR/${pair#*:}"
  [ -d "$query_set" ] && [ -d "$distractors" ] || continue
  set_dir="$(python -m scripts.mixed_set "$query_set" "$distractors")"
  # Both orders of a pair hold the same documents: one index serves them.
  shared="$(printf '%s\n' "${pair%%:*}" "${pair#*:}" | sort | paste -sd+)"
  index_dir="$cache/eval/mixed-$shared"
  for mode in "${retrieval_modes[@]}"; do
    evaluate "$(basename "$set_dir") --mode $mode" "$set_dir" --mode "$mode" --limit 1000 \
      --index-dir "$index_dir"
  done
done

# Reversed sentence-pair sets (scripts/reverse_set.py): tatoeba_en-ja asked the other way round,
# Japanese sentences over English documents. REVERSED="" skips them.
REVERSED="${REVERSED-tatoeba_en-ja}"
for name in $REVERSED; do
  [ -d "$EVAL_DIR/$name" ] || continue
  set_dir="$(python -m scripts.reverse_set "$EVAL_DIR/$name")"
  for mode in "${retrieval_modes[@]}"; do
    # shellcheck disable=SC2046  # the limit is word-split on purpose
    evaluate "$(basename "$set_dir") --mode $mode" "$set_dir" --mode "$mode" \
      $(limit_for "$(basename "$set_dir")")
  done
done

python -m scripts.eval --table "$OUT"
exit "$failed"
