#!/bin/sh
# Train the begin model the finetune trials start from: the begin example's untuned config on
# the four days before the finetune window (20220610..20220613 of `hpo-tools make-data
# demo-data`), evaluated on 20220614. Writes ../../../../demo-begin-model (the repository root's
# demo-begin-model/), which trial.ini names as [finetune_config] fine_tune_checkpoint.
# In production the begin model is the best trial of the begin search, retrained on history.
set -e
PYTHON="${PYTHON:-python}"
case "$PYTHON" in
    /*) ;;
    */*) PYTHON="$(pwd)/$PYTHON" ;;  # a relative path: from where the script was started
esac
cd "$(dirname "$0")"
exec "$PYTHON" -m hpo_tools.trainer \
    --pipeline_config_path ../begin/pipeline.config \
    --model_dir ../../../../demo-begin-model \
    --train_input_path '../../../../demo-data/daily/2022061[0-3].csv' \
    --eval_input_path ../../../../demo-data/daily/20220614.csv
