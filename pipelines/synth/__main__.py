"""Generate a synthetic study: ``python -m pipelines.synth --manifest data_manifests/default.yml``.

Presets for larger studies (benchmarks) override the manifest's ``generator`` section:
``--subjects 100 --minutes 10 --channels 64 --sfreq 500 --out data/bench/bids``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from pipelines.study.manifest import ManifestError, load_manifest
from pipelines.synth.study import StudyDesign, generate_study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", help="Study manifest with a generator section (its bids_root is the output)")
    parser.add_argument("--out", help="BIDS root to write (overrides the manifest's)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--subjects", type=int)
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--channels", type=int)
    parser.add_argument("--sfreq", type=float)
    parser.add_argument("--doses", type=float, nargs="+", help="Doses in mg/kg, 0 = placebo")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    design = StudyDesign()
    out = Path(args.out) if args.out else None
    if args.manifest:
        try:
            manifest = load_manifest(args.manifest)
        except ManifestError as exc:
            print(exc, file=sys.stderr)
            return 2
        if manifest.generator is None:
            print(
                f"{manifest.manifest_path}: has no 'generator' section; it describes real data, which is never regenerated.",
                file=sys.stderr,
            )
            return 2
        g = manifest.generator
        if g.design != "crossover":
            from pipelines.synth import designs

            out = Path(args.out) if args.out else manifest.bids_path
            make = {
                "two_condition_edf": lambda: designs.generate_two_condition_edf(out, g.seed, g.n_subjects),
                "mood_parallel": lambda: designs.generate_mood_parallel(out, g.seed, max(1, g.n_subjects // 2)),
                "open_label": lambda: designs.generate_open_label(out, g.seed, g.n_subjects),
            }
            root = make[g.design]()
            print(f"Wrote the synthetic {g.design} study to {root}")
            return 0
        design = StudyDesign(
            seed=g.seed,
            n_subjects=g.n_subjects,
            minutes=g.minutes,
            n_channels=g.n_channels,
            sfreq=g.sfreq,
            doses_mg_per_kg=tuple(g.doses_mg_per_kg),
        )
        out = out or manifest.bids_path
    if out is None:
        parser.error("give --manifest or --out")
    overrides = {
        "seed": args.seed,
        "n_subjects": args.subjects,
        "minutes": args.minutes,
        "n_channels": args.channels,
        "sfreq": args.sfreq,
        "doses_mg_per_kg": tuple(args.doses) if args.doses else None,
    }
    design = replace(design, **{k: v for k, v in overrides.items() if v is not None})
    root = generate_study(out, design, progress=not args.no_progress)
    print(f"Wrote the synthetic study to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
