"""clinops: Clinical MLOps compendium.

Modules follow the paper's four layers:

- Layer 1 (privacy, minimisation): ``clinops.privacy``, ``clinops.features``
- Layer 2 (observability): ``clinops.uncertainty``, ``clinops.fairness``, ``clinops.drift``
- Layer 3 (audit, lineage): ``clinops.audit``, ``clinops.lineage``
- Layer 4 (human oversight): ``clinops.governance``

Data sources live in ``clinops.data`` (synthetic MIMIC-IV generator, MIMIC-IV directories).
"""

__version__ = "0.1.0"
