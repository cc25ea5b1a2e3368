"""Tables, figures and provenance written under ``reports/``."""
