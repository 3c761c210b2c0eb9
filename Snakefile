# reclaim: published efficient-ML claims as build targets.
#   snakemake results/lora_ga_glue.csv --cores 2 --config scale=smoke
# Stages: data (selection/valuation) -> compression/adapters -> memory-efficient training
# -> evaluation and claim verdicts. Rules are thin: every value reaches a job through
# params: or input:, and each rule declares the reclaim source files it executes.
import json
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, os.path.join(workflow.basedir, "src"))

# Snakemake's own error for an unparsable config file names neither the file nor the line;
# parse params.yaml first so that a half-edited one fails with "params.yaml: ... line N".
from reclaim.config import ConfigError, load_yaml

try:
    load_yaml(os.path.join(workflow.basedir, "params.yaml"))
except ConfigError as exc:
    sys.exit(f"reclaim: {exc}")

configfile: os.path.join(workflow.basedir, "params.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/compress.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/memory.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/claims.smk"
include: "workflow/rules/artifacts.smk"


rule all:
    default_target: True
    input:
        [f"results/{claim}.csv" for claim in config["claims"]],
        [f"results/report/{claim}_table.html" for claim in config["claims"]],
        "results/claims.md",
