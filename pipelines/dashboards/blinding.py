"""Dose-blinded mode for blinded trials: conditions shown as A, B, C … until an unblinding key is given.

The letters are a permutation of the study's doses drawn from a secret (``KW_BLIND_SECRET``, or a file with
``--blind-secret-file``): the same secret gives the same letters every time (a team can talk about "condition
B" for the whole trial), and without the secret the letters say nothing about the doses — not even their
order, since the permutation comes from HMAC-SHA256(secret, study name), not from the dose order.

The unblinding key is the letter → dose table (``A = 0.5`` per line), written by whoever holds the secret::

    KW_BLIND_SECRET=... python -m pipelines.dashboards.blinding key --manifest data_manifests/default.yml > key.txt

``serve --blind --unblind-key key.txt`` checks the key against the secret (a wrong or stale key is refused)
and then shows doses again.  What blinded mode hides everywhere (widgets, titles, URLs, tooltips, summaries,
plot data sent to the browser): dose values, session labels (they contain the dose, e.g. ``ket100``) and
any axis or legend ordered by dose — condition axes are ordered by letter.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import random
import string
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

SECRET_ENV = "KW_BLIND_SECRET"
MIN_SECRET_LENGTH = 16


class BlindingError(ValueError):
    """A missing or short secret, or an unblinding key that does not match it."""


class Blinding:
    """Two-way map dose ↔ letter (A, B, …) for one study."""

    def __init__(self, letter_of: Mapping[float, str]):
        self._letter = {float(d): str(l) for d, l in letter_of.items()}
        self._dose = {l: d for d, l in self._letter.items()}

    @classmethod
    def from_secret(cls, secret: str, study: str, doses: Iterable[float]) -> "Blinding":
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            raise BlindingError(
                f"blinded mode needs a secret of at least {MIN_SECRET_LENGTH} characters "
                f"(environment variable {SECRET_ENV}, or --blind-secret-file)"
            )
        doses = sorted(float(d) for d in set(doses))
        if len(doses) > 26:
            raise BlindingError("more than 26 conditions cannot be lettered")
        seed = hmac.new(secret.encode(), f"kw-blind:{study}".encode(), hashlib.sha256).digest()
        order = list(doses)
        random.Random(seed).shuffle(order)  # seeded by the secret: stable, and secret
        return cls({d: string.ascii_uppercase[i] for i, d in enumerate(order)})

    @property
    def letters(self) -> list[str]:
        return sorted(self._dose)

    def letter(self, dose: float) -> str:
        for d, l in self._letter.items():
            if math.isclose(d, float(dose), rel_tol=1e-9, abs_tol=1e-12):
                return l
        raise KeyError(dose)

    def dose(self, letter: str) -> float:
        return self._dose[letter]

    def key_text(self) -> str:
        """The unblinding key: one ``letter = dose`` line per condition."""
        return "".join(f"{l} = {self._dose[l]:g}\n" for l in self.letters)

    def matches_key(self, text: str) -> bool:
        return parse_key(text) == {l: self._dose[l] for l in self.letters}


def parse_key(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        letter, sep, dose = line.partition("=")
        if not sep:
            raise BlindingError(f"unblinding key: expected 'letter = dose', got {line[:40]!r}")
        try:
            out[letter.strip()] = float(dose)
        except ValueError:
            raise BlindingError(f"unblinding key: {dose.strip()[:20]!r} is not a dose") from None
    return out


def read_secret(secret_file=None, environ=os.environ) -> str:
    if secret_file:
        path = Path(secret_file).expanduser()
        if not path.is_file():
            raise BlindingError(f"{path}: no such blinding secret file")
        return path.read_text(encoding="utf-8").strip()
    return environ.get(SECRET_ENV, "").strip()


def for_study(manifest: str, secret: str) -> Blinding:
    from pipelines.dashboards import data

    key = data.manifest_key(manifest)
    return Blinding.from_secret(secret, data.study(key).name, data.recordings(key)["dose_mg_per_kg"].unique())


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.dashboards.blinding",
        description="Print the unblinding key (letter = dose) of a study.",
    )
    parser.add_argument("command", choices=["key"])
    parser.add_argument("--manifest", default=None)
    parser.add_argument("--blind-secret-file", default=None)
    args = parser.parse_args(argv)
    try:
        print(for_study(args.manifest, read_secret(args.blind_secret_file)).key_text(), end="")
    except BlindingError as exc:
        print(f"refusing: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


# Colours of conditions when blinded: a categorical palette by letter (the dose palette is ordered by dose).
LETTER_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


class Conditions:
    """How an app names, orders and colours the study's conditions: doses, or letters when blinded.

    ``options`` are a Selector's objects (label → value): ``{"0.50 mg/kg": 0.5, …}`` in dose order, or
    ``{"A": "A", …}`` in letter order; ``dose_of`` turns a selector value back into the dose (server side only)."""

    def __init__(self, doses, blinding: Blinding | None = None):
        from pipelines.figures import common as viz

        self.doses = sorted(float(d) for d in set(doses))
        self.blinding = blinding
        if blinding is None:
            self.order = list(self.doses)
            self.options = {viz.dose_label(d): d for d in self.doses}
        else:
            self.order = [blinding.dose(l) for l in blinding.letters]
            self.options = {l: l for l in blinding.letters}

    @property
    def blinded(self) -> bool:
        return self.blinding is not None

    def value_of(self, dose: float):
        return self.blinding.letter(dose) if self.blinded else float(dose)

    def dose_of(self, value) -> float:
        return self.blinding.dose(value) if self.blinded else float(value)

    def label(self, dose: float) -> str:
        from pipelines.figures import common as viz

        return f"condition {self.blinding.letter(dose)}" if self.blinded else viz.dose_label(dose)

    def short(self, dose: float) -> str:
        """A factor on a categorical axis: the letter, or the dose label."""
        from pipelines.figures import common as viz

        return self.blinding.letter(dose) if self.blinded else viz.dose_label(dose)

    def color(self, dose: float) -> str:
        from pipelines.figures import common as viz

        if self.blinded:
            return LETTER_COLORS[self.blinding.letters.index(self.blinding.letter(dose)) % len(LETTER_COLORS)]
        return viz.dose_color(dose)

    def session_label(self, session: str, dose: float) -> str:
        """A recording's condition as shown: its session label (``ket100``), or the letter when blinded."""
        return self.blinding.letter(dose) if self.blinded else session
