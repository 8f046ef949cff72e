# MTARD study (lifelearn.studies.mtard; PAPERS.md section 2): one job per student method
# entry, `mtard_<name>`, all seeds in one process. params = the study's shared settings +
# exactly that method's entry, so changing one method's hyper-parameters reruns that
# method's job and the report only. Teachers come in as checkpoints (student seed k <-
# teacher seed k), the roles each method loads from the study's METHODS registry.
study_rules("mtard")
