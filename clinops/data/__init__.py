"""Data sources: the synthetic MIMIC-IV generator and MIMIC-IV directories opened in DuckDB."""
