"""Active learning: sample MD in OpenMM, pick frames a committee disagrees on, label them, train again.

``equiforce sample`` (:func:`sample`) writes candidate frames from Langevin MD with a model or a classical force
field; :func:`select_by_disagreement` keeps the ones a committee disputes most; ``equiforce learn CONFIG``
(:class:`LearnConfig`, :func:`learn`) runs the whole loop, resumably.
"""
from ._learn import LearnConfig, LearningLoop, SamplingPlan, learn
from ._sample import SampleSettings, classical_system, model_system, sample
from ._select import DISAGREEMENT_KEY, select_by_disagreement

__all__ = ["sample", "SampleSettings", "classical_system", "model_system", "select_by_disagreement",
           "DISAGREEMENT_KEY", "LearnConfig", "SamplingPlan", "LearningLoop", "learn"]
