"""Figures, named after the report notebooks that draw them; :mod:`.common` holds the shared dose colours,
axes and EEG plots."""
