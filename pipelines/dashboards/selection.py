"""What the study explorer can show: the study's subjects, conditions, measures and topomap times, the default
selection, and how a link's query values are read (only these values; anything else is rejected).

Shared by the explorer's first view (:mod:`pipelines.dashboards.overview`, plain HTML) and the interactive
explorer (:class:`pipelines.dashboards.explorer.ExplorerApp`), so a link means the same selection in both."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pipelines.dashboards import data, safety
from pipelines.dashboards.blinding import Blinding, Conditions

PARAMS = ("subject", "dose", "measure", "time_s")


class Choices:
    """The explorer's options for one study (and blinding): ``subjects``, ``conditions``, ``measures``, ``times``."""

    def __init__(self, manifest: str, blinding: Blinding | None = None):
        self.manifest = manifest
        recs = data.recordings(manifest)
        self.settings = data.eeg_settings(manifest)
        self.subjects = sorted(recs["participant_id"].unique())
        self.conditions = Conditions(recs["dose_mg_per_kg"].unique(), blinding)
        self.measures = list(self.settings["entropy_measures"])
        self.times = np.asarray(self.settings["time_s"], dtype=float)

    @property
    def blinded(self) -> bool:
        return self.conditions.blinded

    def defaults(self) -> dict:
        """The first subject; blinded, the first letter (the highest dose would be a dose-chosen default), else
        the highest dose; the study's entropy measure; the topomap at the middle of the plateau."""
        cond, params = self.conditions, self.settings["params"]
        plateau_mid = self.settings["infusion_end_s"] - params.plateau_s / 2.0
        return {
            "subject": self.subjects[0],
            "dose": cond.value_of(cond.order[0 if cond.blinded else -1]),
            "measure": params.entropy_measure,
            "time_s": float(self.times[np.argmin(np.abs(self.times - plateau_mid))]),
        }

    def url_fields(self) -> dict:
        """How each URL query value is read: only this study's subjects, conditions, measures and window times."""
        options = self.conditions.options
        dose = (
            safety.one_of(options.values()) if self.blinded else safety.closest_number(options.values(), labels=options)
        )
        return {
            "subject": safety.one_of(self.subjects),
            "dose": dose,
            "measure": safety.one_of(self.measures),
            "time_s": safety.number_in(float(self.times[0]), float(self.times[-1]), grid=self.times),
        }

    def read(self, query: Mapping[str, str]) -> tuple[dict, list[str]]:
        """(the selection: defaults overridden by the query's valid values, names of the rejected fields)."""
        valid, rejected = safety.validate_query(query, self.url_fields())
        return {**self.defaults(), **valid}, rejected
