# The toy study (lifelearn.studies.toy): one job per method, `toy_<method>`.
study_rules("toy")
