"""Committee uncertainty: several potentials as one model file (mean energy drives MD) and their spread.

* :func:`export_committee` writes members (checkpoints or models; same elements and cutoff) as ONE model file
  whose ``forward`` is the members' mean energy, so ``create_force``, ``MLPotential`` and the ASE calculator
  run it unchanged; ``member_energies`` / ``member_forces`` give the members one by one.
* :class:`CommitteeEvaluator`, :func:`committee_spread`, :func:`force_disagreement`: energy and per-atom force
  spread of structures (Å, eV, eV/Å), e.g. to pick frames for active learning.
* :class:`CommitteeReporter`: an OpenMM reporter logging the spread during MD, which can stop the run
  (:class:`CommitteeSpreadExceeded`).
"""
from ._evaluator import CommitteeEvaluator, CommitteeSpread, committee_spread, force_disagreement, spread_of_members
from ._export import COMMITTEE_ARCHITECTURE, check_compatible, export_committee
from ._potential import CommitteePotential
from ._reporter import CommitteeReporter, CommitteeSpreadExceeded

__all__ = ["export_committee", "CommitteePotential", "COMMITTEE_ARCHITECTURE", "check_compatible",
           "CommitteeEvaluator", "CommitteeSpread", "committee_spread", "force_disagreement", "spread_of_members",
           "CommitteeReporter", "CommitteeSpreadExceeded"]
