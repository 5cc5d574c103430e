"""Panel dashboards over a study's derived outputs: the study explorer and the dose-titration monitor.

    python -m pipelines.dashboards.serve            # both, on 127.0.0.1, URLs printed (make serve)

In JupyterLab::

    import panel as pn; pn.extension()
    from pipelines.dashboards import ExplorerApp, TitrationApp
    ExplorerApp("data_manifests/default.yml")

Importing this package does not import Panel; the classes load on first use.
"""

from __future__ import annotations

__all__ = ["ExplorerApp", "TitrationApp", "export_static"]


def __getattr__(name):
    if name == "ExplorerApp":
        from pipelines.dashboards.explorer import ExplorerApp

        return ExplorerApp
    if name == "TitrationApp":
        from pipelines.dashboards.titration import TitrationApp

        return TitrationApp
    if name == "export_static":
        from pipelines.dashboards.export import export_static

        return export_static
    raise AttributeError(name)
