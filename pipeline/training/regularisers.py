r"""Learning without forgetting (Li & Hoiem, 2016): a frozen copy of the student, taken when a phase
begins, whose scores of each batch's candidates the student is kept close to.

.. math:: \mathcal{L}_{lwf} = T^2\,\mathrm{KL}\big(\mathrm{softmax}(s_{old}/T)\,\|\,\mathrm{softmax}(s/T)\big)

PROD adds this term to its cross-encoder stages (``1.0·KL_4(s_old, s)``, with ``s_old`` the student at the
start of the stage); with few training labels it keeps what the warm-up (or the previous iteration)
taught while the labels pull the student elsewhere. The copy is one of the loop's models, so checkpoints
hold it and a resumed job scores with the same copy; the term itself is :class:`pipeline.losses.ListwiseKL`
against the copy's scores, which :func:`pipeline.training.distill.distill_phase` computes live
(``frozen_scorers``).
"""

from __future__ import annotations

import copy
from typing import Callable, Mapping

from torch import nn

#: the name of the frozen copy among the loop's models and in ``Batch.teacher_scores``
PREVIOUS_STUDENT = "previous-student"


def frozen_copy(model: nn.Module, of: str = "student", name: str = PREVIOUS_STUDENT
                ) -> tuple[nn.Module, Callable[[Mapping[str, nn.Module]], None]]:
    """An untrained copy of ``model`` (the phase brings it into the loop as ``name``) and the ``on_start``
    hook of the phase it should be taken at: the hook copies ``of``'s weights as they are when that phase
    begins."""
    frozen = copy.deepcopy(model).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)

    def take_copy(current: Mapping[str, nn.Module]) -> None:
        current[name].load_state_dict(current[of].state_dict())
        current[name].eval()

    return frozen, take_copy
