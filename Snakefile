# MBMT-Net reproduction: fetch -> preprocess -> train (ST-Nets, MT-Net, MBMT-Net variants, MTAN)
# -> evaluate -> report. Every job runs one `mbmt` stage command; dvc.yaml runs the same commands
# with the same inputs, outputs and params (tests/test_dag.py proves it). See docs/workflow.md.
#
#   snakemake --cores all                                # the paper's settings (params.yaml)
#   snakemake --cores all --configfile config/demo.yaml  # the CPU demo (a preset over params.yaml)

from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/dvc.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        rules.report.output,
