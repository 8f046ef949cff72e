# Dataset distillation by trajectory matching (lifelearn.studies.dataset_distillation;
# PAPERS.md section 4):
#   dd_experts_<set>:   N experts of one expert set (plain / smooth), a trajectory file each
#   dd_distill_<m>:     method m's synthetic sets for every IPC and seed (`random`: a real subset)
#   dd_evaluate_<m>:    K fresh networks per synthetic set, trained on it alone
# params carry exactly what each job reads: changing a distillation switch reruns that
# method's distillation, its evaluation and the report; changing an expert set's option
# reruns those experts and every method matching them.
study_rules("dataset_distillation")
