# TGeo-KD study (lifelearn.studies.tgeo_kd): one job per fusion-ratio method (ce, kd, anl,
# ada, wls, tgeo), `tgeo_kd_<method>`, all seeds in one process. params carry exactly that
# method's config plus what the methods share (dataset, teacher, student, train, seeds), so
# changing one method's hyper-parameter reruns that method's job and the report only.
study_rules("tgeo_kd")
