"""`python -m training.build_examples --data DIR`: write the app's real example cases (at most six).

The development data's README allows up to six example cases in the repository, with attribution
and licence beside them. The choice is mechanical, never by how a model does on them: the first
case (by case id) of each listed class in the *test* split of the shipped split recipe (grouped,
seed 0, 70/15/15), so no shipped entry trained, was selected or was calibrated on them.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "skinui" / "examples" / "real"
# dataset, folder under --data, classes (in button order), modality of its image
PLAN = (("ham10000", "ham10000", ("mel", "nv", "bcc"), "dermoscopic"),
        ("pad-ufes-20", "pad-ufes-20", ("BCC", "MEL", "SEK"), "clinical"))


def choose(dataset: str, root: Path, classes: tuple[str, ...]) -> list:
    from training.data import load_cases, make_split

    cases, _, schema = load_cases(dataset, root)
    split, _ = make_split(dataset, cases, {"method": "grouped", "seed": 0, "fractions": [0.7, 0.15, 0.15]})
    test = sorted((cases[i] for i in split["test"]), key=lambda c: c.case_id)
    return [next(c for c in test if c.label == label) for label in classes], schema


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.build_examples", description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the folder holding ham10000/ and pad-ufes-20/")
    args = ap.parse_args(argv)
    HERE.mkdir(exist_ok=True)
    records = []
    for dataset, folder, classes, modality in PLAN:
        chosen, schema = choose(dataset, Path(args.data) / folder, classes)
        for case in chosen:
            src = getattr(case, modality).path
            name = f"{dataset}-{case.case_id}{src.suffix.lower()}"
            shutil.copyfile(src, HERE / name)
            records.append({
                "title": f"{schema.class_names.get(case.label, case.label)} ({dataset}, {case.case_id})",
                "dataset": dataset, "label": case.label, "case_id": case.case_id, "image": name,
                "modality": modality,
                "metadata": {f.name: case.metadata.get(f.name) for f in schema.fields},
                "licence": schema.licence, "citation": schema.citation,
            })
    (HERE / "cases.json").write_text(json.dumps(records, indent=1) + "\n")
    print(f"{len(records)} example cases written to {HERE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
