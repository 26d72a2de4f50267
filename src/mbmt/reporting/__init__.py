"""The report (`mbmt report`): the paper's tables and figures, each measured value beside the published one.

tables: the paper's tables as data, from metrics JSON and parameter counts.
delta_m: Δm, each multi-task model's mean relative difference from the single-task models.
render: those tables as Markdown, CSV and HTML.
sources: what the report reads (metrics, model files, splits) and the md5 of each file.
figures: training curves from the DVCLive logs; predictions beside the ground truth.
document: reports/README.md, the index, and what was run (tables/run.*). build: writes reports/.
"""
