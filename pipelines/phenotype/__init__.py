"""Phenotype tables: questionnaire scoring, mood scales, cytokines (with assay limits and units), therapy sessions.

Pure functions on tables; they import only from :mod:`pipelines.core` and :mod:`pipelines.stats`.
"""
