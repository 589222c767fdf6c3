"""Maintenance tools: the offline plots page's template (build_plots_template) and the prepared GPU check
(gpu_check, run through gpu_check.sh). A regular package, so that no `tools` installed elsewhere shadows it."""
