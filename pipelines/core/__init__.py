"""Foundation: errors, paths, units, measure definitions, labels, provenance, code hashes and compute settings.

Nothing here imports from any other part of ``pipelines``; every other layer may import from here.
"""
