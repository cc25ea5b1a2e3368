"""``bonetumor architecture``: the paper's Table 1 from the live VGG-19, and the detector's parts."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("architecture", help="Table 1 (VGG-19 layers) from the live model")
    parser.add_argument("--json", action="store_true", help="print Table 1 rows as JSON")
    parser.add_argument("--detector", metavar="PROFILE",
                        help="also print the parameter count of each part of the Mask R-CNN of PROFILE")
    parser.set_defaults(handler=run)


def run(args) -> int:
    import pandas as pd

    from bonetumor import architecture

    table = architecture.compare_with_paper()
    rows = [{"layer": r.layer, "output_shape": r.output_shape,
             "parameters": None if pd.isna(r.parameters) else int(r.parameters),
             "matches_paper": bool(r.match)} for r in table.itertuples()]
    detector = None
    if args.detector:
        from bonetumor import config
        from bonetumor.modeling import build_model

        settings = config.load(args.detector)
        model = build_model(settings.model.model_copy(update={"pretrained": False}), settings.data.image_size)
        detector = architecture.detector_summary(model)
    if args.json:
        out = {"table1": rows}
        if detector is not None:
            out["detector"] = detector.to_dict(orient="records")
        print(json.dumps(out, indent=2))
    else:
        print(table[["layer", "output_shape", "parameters", "match"]].to_string(index=False))
        if detector is not None:
            print()
            print(detector.to_string(index=False))
    return 0 if all(r["matches_paper"] for r in rows) else 1
