"""Offline HTML of the dashboards' key interactive figures (for reports; no server, no network).

``export_static(study, out_dir)`` writes self-contained files (Bokeh/Panel JavaScript inlined; the subject
slider's frames embedded), so they open from a USB stick or an e-mail attachment:

* ``eeg_by_subject.html`` — occipital alpha and entropy time courses of one subject at every dose, a slider
  over (pseudonymous) subjects;
* ``dose_response.html`` — occipital alpha and entropy plateau change against dose, per-dose mean with 95 % CI
  (each measure on its own y-axis, labelled with its unit);
* ``titration_onsets.html`` — every recording's smoothed occipital alpha with the suppression threshold and
  the detected onset, a slider over recordings (what the titration monitor ends on).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

from pipelines.core.offline import inline_panel_assets
from pipelines.dashboards import data
from pipelines.eeg import dynamics
from pipelines.figures import common as viz


def _subject_time_courses(key: str):
    import holoviews as hv

    settings = data.eeg_settings(key)
    measure = settings["params"].entropy_measure
    end = settings["infusion_end_s"]
    alpha = data.group_time_course(key, "occipital_alpha_db")
    entropy = data.group_time_course(key, measure)
    frames = {}
    for participant in sorted(alpha["participant_id"].unique()):
        panels = []
        for frame, label, threshold in (
            (alpha, "occipital alpha (dB re baseline)", settings["params"].threshold_db),
            (entropy, f"{measure} (change)", None),
        ):
            rows = frame[frame["participant_id"] == participant]
            curves = []
            for dose, group in rows.sort_values("time_s").groupby("dose_mg_per_kg"):
                smoothed = dynamics.smooth(group["value"].to_numpy(), settings["params"].smooth_windows)
                curves.append(
                    hv.Curve((group["time_s"], smoothed), "time_s", label, label=viz.dose_label(dose)).opts(
                        color=viz.dose_color(dose), line_width=2
                    )
                )
            marks = [
                hv.VLine(0).opts(color="black", line_dash="dashed"),
                hv.VLine(end).opts(color="black", line_dash="dotted"),
            ]
            if threshold is not None:
                marks.append(hv.HLine(threshold).opts(color="#d62728", line_dash="dashed"))
            panels.append(
                hv.Overlay(curves + marks).opts(
                    width=560,
                    height=300,
                    show_grid=True,
                    legend_position="right",
                    xlabel="time from infusion start (s)",
                    title=label,
                )
            )
        frames[participant] = hv.Layout(panels).cols(2)
    return hv.HoloMap(frames, kdims=["participant"]).collate()


def _dose_response(key: str):
    import holoviews as hv

    measure = data.eeg_settings(key)["params"].entropy_measure
    # Each measure on its own y-axis with its unit: dB and entropy units must never share one scale.
    plots = [
        viz.dose_response_plot(
            data.dose_means(key, m),
            data.plateau_changes(key, m),
            viz.measure_axis_label(m, "plateau change"),
            title,
            measure=m,
        )
        for m, title in (
            ("occipital_alpha_db", "Occipital alpha (dB re baseline), 95% CI"),
            (measure, f"{measure}, all channels, 95% CI"),
        )
    ]
    return hv.Layout(plots).cols(2)


def _onsets(key: str):
    import holoviews as hv

    settings = data.eeg_settings(key)
    cfg = settings["params"]
    alpha = data.group_time_course(key, "occipital_alpha_db")
    markers = data.markers(key).set_index(["participant_id", "session"])
    frames = {}
    for (participant, session), rows in alpha.groupby(["participant_id", "session"]):
        rows = rows.sort_values("time_s")
        dose = float(rows["dose_mg_per_kg"].iloc[0])
        smoothed = dynamics.smooth(rows["value"].to_numpy(), cfg.smooth_windows)
        onset = markers["alpha_suppression_onset_s"].get((participant, str(session)), np.nan)
        layers = [
            hv.Curve((rows["time_s"], rows["value"]), "time_s", "occipital alpha (dB re baseline)").opts(
                alpha=0.3, color="#08306b"
            ),
            hv.Curve((rows["time_s"], smoothed), "time_s", "occipital alpha (dB re baseline)").opts(
                line_width=3, color="#08306b"
            ),
            hv.HLine(cfg.threshold_db).opts(color="#d62728", line_dash="dashed"),
            hv.VLine(0).opts(color="black", line_dash="dashed"),
            hv.VLine(onset if np.isfinite(onset) else -1e6).opts(color="#d62728"),
        ]
        title = f"{participant} · {session} ({viz.dose_label(dose)}): " + (
            f"onset {onset:.0f} s" if np.isfinite(onset) else "no sustained suppression"
        )
        frames[f"{participant} · {session}"] = hv.Overlay(layers).opts(
            title=title,
            width=760,
            height=320,
            show_grid=True,
            xlabel="time from infusion start (s)",
            xlim=(float(rows["time_s"].min()), float(rows["time_s"].max())),
        )
    return hv.HoloMap(frames, kdims=["recording"])


def export_static(study, out_dir) -> list[Path]:
    """Write the offline HTML files into ``out_dir``; returns their paths.  Raises if any links a remote script."""
    import holoviews as hv
    from bokeh.resources import INLINE

    viz.setup()
    key = data.manifest_key(study)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in (
        ("eeg_by_subject", _subject_time_courses),
        ("dose_response", _dose_response),
        ("titration_onsets", _onsets),
    ):
        path = out / f"{name}.html"
        tmp = out / f".{name}.tmp.html"  # hv.save appends .html to any other suffix
        with contextlib.redirect_stderr(io.StringIO()):  # Panel's embed draws a progress bar per file
            hv.save(
                build(key), tmp, fmt="html", resources=INLINE, title=f"{data.study(key).name}: {name.replace('_', ' ')}"
            )
        text = tmp.read_text(encoding="utf-8")
        text = inline_panel_assets(text)
        if re.search(r'<script[^>]*src="https?://', text):
            tmp.unlink()
            raise RuntimeError(f"{path.name} would load JavaScript from the network; exports must be self-contained")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
