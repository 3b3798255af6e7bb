#!/usr/bin/env bash
# Reference numbers of the evaluation stack on the synthetic worlds (real images only: no generator yet).
# Writes one JSON per line of docs/RESULTS.md into docs/results/. Run from the repo root:
#   bash scripts/reference_evals.sh
set -euo pipefail
out=docs/results
mkdir -p "$out"
t2i() { .venv/bin/t2i "$@"; }
for w in birds scenes; do
  # ceiling of prompt faithfulness: real test images judged against their own first caption
  t2i eval faithfulness --images dataset:$w:test:1000 --world $w --no-progress --out $out/faithfulness_real_$w.json >/dev/null
  # IS of real test images (species / category logits of the synth evaluator)
  t2i eval is --images dataset:$w:test:1000 --world $w --no-progress --out $out/is_real_$w.json >/dev/null
  # FID between two disjoint real samples (train vs test images) of the same world
  t2i eval fid --real dataset:$w:test:1000 --fake dataset:$w:train:1000 --extractor synth --world $w \
    --no-progress --out $out/fid_synth_${w}_train_vs_test.json >/dev/null
done
# FID across worlds (how far apart two different distributions are for each extractor)
t2i eval fid --real dataset:birds:test:1000 --fake dataset:scenes:test:1000 --extractor synth --world birds \
  --no-progress --out $out/fid_synth_birds_vs_scenes.json >/dev/null
t2i eval fid --real dataset:birds:test:500 --fake dataset:birds:train:500 --extractor inception \
  --no-progress --out $out/fid_inception_birds_train_vs_test.json >/dev/null
t2i eval fid --real dataset:birds:test:500 --fake dataset:scenes:test:500 --extractor inception \
  --no-progress --out $out/fid_inception_birds_vs_scenes.json >/dev/null
echo "wrote $(ls $out | wc -l) files to $out"
