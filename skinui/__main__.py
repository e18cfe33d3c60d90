"""`python -m skinui zoo` (list entries as JSON), `predict` (batch CSV predictions), `compact` (fp16 storage)."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from skinui.cases import IMAGE_MODALITIES, Case, ImageError, load_image
from skinui.vocabulary import MODALITY_LABELS as LABELS

RESERVED = ("case_id", *IMAGE_MODALITIES)
CHUNK = 16
# skinui.trust.uncertainty measure -> output column (empty where the entry or the run has none)
UNCERTAINTY_COLUMNS = {"branch disagreement": "branch_disagreement", "test-time-augmentation spread": "tta_spread"}


def _zoo(args: argparse.Namespace) -> int:
    from skinui.zoo import list_entries, summary

    print(json.dumps([summary(c) for c in list_entries(args.weights_dir)], indent=2))
    return 0


def _compact(args: argparse.Namespace) -> int:
    from skinui.zoo import ZooError, compact_entry, list_entries

    names = args.names or [c["name"] for c in list_entries(args.weights_dir) if c.get("dtype") != "float16"]
    for name in names:
        try:
            before, after = compact_entry(name, args.weights_dir)
        except ZooError as err:
            print(f"{name}: {err}", file=sys.stderr)
            return 1
        print(f"{name}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB", file=sys.stderr)
    return 0


def _image(value: str, base: Path) -> Any:
    path = Path(value).expanduser()
    if not path.is_absolute() and not path.exists():
        path = base / path  # relative paths may be relative to the CSV's folder
    if not path.is_file():
        raise ImageError(f"image file {value} was not found.")
    return load_image(path)


def _photo_modalities(entry: Any) -> list[str]:
    """The entry's image modalities a photo can feed (not those that read MILK10k MONET concept scores)."""
    from skinui.models.encoders import ConceptMLP

    encoders = entry.model.image_encoders
    return [m for m in entry.modalities if m in IMAGE_MODALITIES and not isinstance(encoders[m], ConceptMLP)]


def _ignored_notes(entry: Any) -> dict[str, str]:
    """Input column group ("dermoscopic", "clinical", "metadata") -> the warning for a row that fills it
    although the entry does not read it from a CSV."""
    photos = _photo_modalities(entry)
    reads = ", ".join(LABELS[m] for m in entry.modalities)
    notes = {}
    for m in IMAGE_MODALITIES:
        if m in photos:
            continue
        if m in entry.modalities:  # a concept-score branch: a photo cannot feed it
            notes[m] = (f"The {LABELS[m]} column is not used by {entry.name}: it reads MILK10k MONET concept scores "
                        f"for the {LABELS[m]}, which cannot be computed from a photo; it was ignored.")
        else:
            notes[m] = f"The {LABELS[m]} column is not used by {entry.name} (it reads: {reads}); it was ignored."
    if "metadata" not in entry.modalities:
        notes["metadata"] = (f"The metadata columns are not used by {entry.name} (it reads: {reads}); "
                             "they were ignored.")
    return notes


def _aliases(entry: Any, columns: list[str]) -> dict[str, str]:
    """CSV column -> the entry's metadata field recording the same fact under another dataset's name
    (sex/gender, localization/region/site, age_approx/age, ...), as the app's form carries values over."""
    fields = list(entry.encoder.field_names) if entry.encoder is not None and "metadata" in entry.modalities else []
    leaks = set(entry.schema.leak_fields) if entry.schema is not None else set()
    others = [c for c in columns if c and c not in RESERVED and c not in fields and c not in leaks]
    if not fields or not others:
        return {}
    from skinui.vocabulary import concept  # the app's mapping of field names to facts

    out = {}
    for column in others:
        targets = [f for f in fields if concept(f) == concept(column)]
        if len(targets) == 1:
            out[column] = targets[0]
    return out


def _row_notes(row: dict[str, str], photos: list[str], ignored: dict[str, str]) -> list[str]:
    """Warnings for the columns this row fills that the entry does not read."""
    filled = {m for m in IMAGE_MODALITIES if (row.get(m) or "").strip()}
    if any(k and k not in RESERVED and (v or "").strip() for k, v in row.items() if isinstance(v, str)):
        filled.add("metadata")
    return [ignored[m] for m in (*IMAGE_MODALITIES, "metadata") if m in filled and m in ignored]


def _row_case(i: int, row: dict[str, str], base: Path, photos: list[str], aliases: dict[str, str]) -> Case:
    """One CSV row -> Case with the entry's images loaded (validated); raises ImageError for a bad image.
    Image columns the entry does not read are never opened."""
    case_id = (row.get("case_id") or "").strip() or f"row{i + 1}"
    images = {m: _image(v, base) if m in photos and (v := (row.get(m) or "").strip()) else None
              for m in IMAGE_MODALITIES}
    # An empty cell is not given (so an empty leak-field column does not warn on every row).
    metadata = {k: v.strip() for k, v in row.items() if k and k not in RESERVED and isinstance(v, str) and v.strip()}
    for column, field in aliases.items():  # the entry's own column wins when both are filled
        if column in metadata and field not in metadata:
            metadata[field] = metadata.pop(column)
    return Case(case_id, images["dermoscopic"], images["clinical"], metadata)


def _predict(args: argparse.Namespace) -> int:
    from skinui.zoo import ZooError, load_entry

    csv_path = Path(args.csv)
    if not csv_path.is_file():
        print(f"error: the CSV file {csv_path} does not exist.", file=sys.stderr)
        return 2
    try:
        entry = load_entry(args.entry, args.weights_dir)
    except ZooError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (UnicodeDecodeError, csv.Error) as err:
        print(f"error: {csv_path} is not a readable UTF-8 CSV file ({err}).", file=sys.stderr)
        return 2
    photos, ignored, aliases = _photo_modalities(entry), _ignored_notes(entry), _aliases(entry, header)
    for column, field in aliases.items():
        print(f"note: column {column!r} is read as {entry.name}'s metadata field {field!r}.", file=sys.stderr)
    results: list[dict[str, Any]] = []
    ready: list[tuple[int, Case, list[str]]] = []
    for i, row in enumerate(rows):
        result = {"case_id": (row.get("case_id") or "").strip() or f"row{i + 1}", "error": ""}
        results.append(result)
        notes = _row_notes(row, photos, ignored)
        try:
            case = _row_case(i, row, csv_path.parent, photos, aliases)
            entry.prepare([case])  # per-row validation: a bad row never takes its chunk down
            ready.append((i, case, notes))
        except (ImageError, ValueError) as err:
            result["error"] = str(err)
        result["warnings"] = " | ".join(notes)
    for start in range(0, len(ready), CHUNK):
        chunk = ready[start:start + CHUNK]
        preds = entry.predict([c for _, c, _ in chunk], tta=args.tta, average_views=args.average_views)
        for (i, _, notes), pred in zip(chunk, preds):
            results[i].update({f"prob_{k}": round(v, 6) for k, v in pred.probabilities.items()})
            results[i].update(prediction=pred.prediction, confidence=round(pred.confidence, 6),
                              prediction_set="|".join(pred.prediction_set or []),
                              unusual="|".join(m for m, v in (pred.unusual or {}).items() if v["unusual"]),
                              **{UNCERTAINTY_COLUMNS[k]: round(v["value"], 6) for k, v in (pred.uncertainty or {}).items()},
                              warnings=" | ".join([*pred.warnings, *notes]))
    # the trust columns come last, so readers of the original columns by position are unaffected
    columns = ["case_id", *(f"prob_{c}" for c in entry.classes), "prediction", "confidence", "error", "warnings",
               "prediction_set", "unusual", *UNCERTAINTY_COLUMNS.values()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(results)
    bad = sum(bool(r["error"]) for r in results)
    print(f"wrote {len(results)} rows to {out} ({bad} with an error)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skinui", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    z = sub.add_parser("zoo", help="print the zoo's entries as JSON")
    z.add_argument("--weights-dir", default=None, help="weights folder (default: $SKINUI_WEIGHTS or <repo>/weights)")
    c = sub.add_parser("compact", help="store entries' own weights in fp16 (halves weights/)")
    c.add_argument("names", nargs="*", help="entries (default: every entry stored in fp32)")
    c.add_argument("--weights-dir", default=None)
    p = sub.add_parser("predict", help="predict every row of a CSV of cases")
    p.add_argument("--entry", required=True, help="zoo entry name (see python -m skinui zoo)")
    p.add_argument("--csv", required=True, help="CSV: case_id, dermoscopic, clinical (image paths, optional), "
                                                "then metadata field columns")
    p.add_argument("--out", required=True, help="output CSV of probabilities and predictions")
    p.add_argument("--weights-dir", default=None)
    p.add_argument("--tta", action="store_true",
                   help="also measure the probabilities' spread over flipped views (tta_spread column; 4x the "
                        "image-encoder time)")
    p.add_argument("--average-views", action="store_true",
                   help="predict from the probabilities averaged over the photo and its 3 flipped views (4x the "
                        "image-encoder time, shared with --tta); prediction_set is left empty, as its coverage "
                        "was calibrated on single views. An entry whose card's views block says 'averaged' "
                        "always predicts this way, with sets fitted on the averaged probabilities; the card's "
                        "views.check says why (held-out halves of validation)")
    args = parser.parse_args(argv)
    return {"zoo": _zoo, "predict": _predict, "compact": _compact}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
