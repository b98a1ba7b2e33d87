"""The parts of :class:`clinops.audit.log.AuditTrail`, one concept per module.

``tail`` (catching up with the log, recovering a torn tail), ``commit`` (appending: group
commit, encryption, seal, receipts), ``checkpointing`` (signed, witnessed, archived
checkpoints), ``admin`` (erasure, retention, key rotations), ``reading`` (find, show, the
prediction index), ``proving`` (proof bundles, verification). Each is a mixin over the state
that :class:`~clinops.audit.log.AuditTrail` creates and locks; use the trail, not the parts.
"""
