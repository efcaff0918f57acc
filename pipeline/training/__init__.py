"""Training: the ``train`` and ``init_student`` steps (:mod:`.driver`), the ``finetune`` step
(:mod:`.finetune`), the loop over phases and trained models (:mod:`.loop`), examples and batches
(:mod:`.sampling`), teacher scores (:mod:`.teachers`), the shared phases (:mod:`.warmup`,
:mod:`.distill`) that methods assemble and shared regularisers (:mod:`.regularisers`)."""

from .driver import TrainingRun, init_student, train_student
from .loop import Phase, linear_schedule, run_phases
from .sampling import Example, build_examples, sample_groups

__all__ = ["Example", "Phase", "TrainingRun", "build_examples", "init_student", "linear_schedule", "run_phases",
           "sample_groups", "train_student"]
