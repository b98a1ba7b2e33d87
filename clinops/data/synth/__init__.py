"""Synthetic MIMIC-IV v2.2 generator (entry point: :mod:`clinops.data.synthetic`).

Modules:

- :mod:`.schema`: the v2.2 DDL column order and types, and the CSV/gzip writer;
- :mod:`.reference`: item ids, labels, units, ICD codes and value vocabularies;
- :mod:`.population`: patients, admissions, ICU stays and the latent risk model;
- :mod:`.events`: chartevents, labevents, inputevents and procedureevents per chunk;
- :mod:`.calibration`: plain-SQL checks of the calibration targets on a generated directory.
"""
