"""Names kept for hpo_tools 0.1.x experiment files (see :mod:`hpo_tools.core.utils.run`)."""
