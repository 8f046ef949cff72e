# Teacher pretraining (lifelearn.studies.teachers): one job per teacher, `pretrain_<name>`,
# all its seeds in one process. params carry exactly the teacher's config section, so
# changing one teacher's hyper-parameter reruns that teacher's job and what depends on it.
# Data inputs are ancient() (DVC does not keep mtimes), so the data version recorded in
# data.dvc is a param instead: `dvc add data` after a data change reruns training.
study_rules("teachers")
