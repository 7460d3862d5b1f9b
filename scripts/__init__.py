"""Measurement scripts for indexer, run from the repository root as modules:

    python -m scripts.eval SET_DIR          retrieval / STS quality of one eval set
    scripts/eval_all.sh                     every eval set, every mode (eval_results.jsonl)
    python -m scripts.mixed_set ...         a mixed-language eval set
    python -m scripts.reverse_set SET_DIR   a sentence-pair set asked the other way round
    python -m scripts.ablation              the ranking choices (ablation_*results.jsonl)
    python -m scripts.bench                 speed: embedding, build, ask, FAISS at scale
    python -m scripts.reindex_bench         cron-style re-indexing with the real CLI
    python -m scripts.profile               where the time goes (profile_results.jsonl)
    python -m scripts.quantize_eval         int8 and 4-bit weights (quantize_results.jsonl)

Each prints its results as JSON lines on stdout, stamped with commit, date, arguments and
machine by scripts.common.emit; progress goes to stderr.
"""
