"""Small accessible widgets the dashboards use where Panel's own fail an accessibility check (axe-core).

Panel's sliders (noUiSlider) draw a handle with role="slider" but no accessible name, and its number inputs
have spin buttons without text: screen readers announce "slider" / "button" and nothing else.
:class:`RangeInput` is a native ``<input type="range">`` with a ``<label for>`` and an ``<output>`` showing the
value: keyboard, screen readers and axe understand it as it is.
"""

from __future__ import annotations

import param
from panel.custom import JSComponent


class RangeInput(JSComponent):
    """A labelled native range input; ``value`` is synced with the browser when the visitor lets go."""

    value = param.Number(default=0.0)
    start = param.Number(default=0.0)
    end = param.Number(default=1.0)
    step = param.Number(default=1.0)
    label = param.String(default="")
    unit = param.String(default="")

    _esm = """
    export function render({ model, el }) {
      const id = 'kw-range-' + Math.random().toString(36).slice(2);
      const label = document.createElement('label');
      label.htmlFor = id;
      const input = document.createElement('input');
      input.type = 'range';
      input.id = id;
      input.style.width = '100%';
      const out = document.createElement('output');
      out.htmlFor = id;
      out.style.marginLeft = '0.4em';
      const shown = (v) => `${Number(v).toLocaleString('en', {maximumFractionDigits: 2})}${model.unit ? ' ' + model.unit : ''}`;
      const sync = () => {
        label.textContent = model.label;
        input.min = model.start; input.max = model.end; input.step = model.step; input.value = model.value;
        input.setAttribute('aria-valuetext', shown(model.value));
        out.textContent = shown(model.value);
      };
      sync();
      input.addEventListener('input', () => { out.textContent = shown(input.value); });
      input.addEventListener('change', () => { model.value = Number(input.value); });
      model.on(['value', 'start', 'end', 'step', 'label', 'unit'], sync);
      const head = document.createElement('div');
      head.append(label, out);
      el.append(head, input);
    }
    """

    @classmethod
    def linked(cls, target: param.Parameterized, name: str, label: str, unit: str = "", **kw) -> "RangeInput":
        """A RangeInput two-way linked to ``target.<name>`` (a bounded param.Number)."""
        p = target.param[name]
        lo, hi = p.bounds
        widget = cls(
            value=getattr(target, name),
            start=lo,
            end=hi,
            step=p.step or kw.pop("step", 1.0),
            label=label,
            unit=unit,
            **kw,
        )
        widget.param.watch(lambda e: setattr(target, name, e.new), "value")
        target.param.watch(lambda e: setattr(widget, "value", e.new), name)
        return widget
