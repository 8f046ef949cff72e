# Continual fine-tuning and its evaluation (lifelearn.studies.continual; PAPERS.md
# sections 5-6):
#   continual_<run>:       one configuration (setting + strategies) over its seeds
#   continual_eval_<run>:  the continual metrics of its accuracy matrix and raw stream,
#                          against the setting's single-task-expert run where there is one
# params carry exactly the run's resolved config (its setting + its strategies), so
# changing one strategy's hyper-parameter reruns that run, its evaluation and the report;
# changing the metric code reruns only the evaluations and the report.
study_rules("continual")
