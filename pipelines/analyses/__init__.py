"""One module per report notebook, named after it; each has ``run(study, params) -> Result``."""
