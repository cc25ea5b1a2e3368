"""The benchmark's table: printed, and written as ``benchmark.csv`` and ``benchmark.md``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from bonetumor import io as bio

LABELS = {"stock": "(a) stock torchvision composition", "project": "(b) this project",
          "bound": "(c) bound: backbone forward+backward", "loader": "DataLoader alone"}
UNITS = {"train_images_per_s": "train images/s", "infer_ms_per_image_b1": "inference ms/image, batch 1",
         "infer_images_per_s_bN": "inference images/s, batch {n}", "images_per_s": "images/s"}
COLUMNS = ("case", "measure", "median", "q1", "q3", "min", "max", "peak_memory_mib", "memory_increase_mib")


def rows(result: dict) -> list[dict]:
    """One row per case and measure (median, quartiles, min, max, peak memory of the case), then the loader."""
    n = result["settings"]["infer_batch"]
    out = []
    for case in ("stock", "project", "bound"):
        measures = result["results"].get(case, {})
        for measure, stats in measures.items():
            if measure.endswith("_mib"):
                continue
            out.append({"case": LABELS[case], "measure": UNITS[measure].format(n=n),
                        **{k: round(stats[k], 3) for k in ("median", "q1", "q3", "min", "max")},
                        "peak_memory_mib": round(measures["peak_memory_mib"], 1),
                        "memory_increase_mib": round(measures["memory_increase_mib"], 1)})
    if result.get("loader"):
        stats = result["loader"]["images_per_s"]
        out.append({"case": LABELS["loader"], "measure": f"images/s, {result['loader']['num_workers']} workers",
                    **{k: round(stats[k], 3) for k in ("median", "q1", "q3", "min", "max")}, "peak_memory_mib": None,
                    "memory_increase_mib": None})
    return out


def ratio_lines(result: dict) -> list[str]:
    """The ratios, (b)/(a) training last."""
    r = result["ratios"]

    def one(key: str, text: str) -> str:
        p = r[key]["paired"]
        return (f"{text}: {r[key]['median_of_medians']:.2f}x (per repetition: median {p['median']:.2f}, "
                f"min {p['min']:.2f}, max {p['max']:.2f})")

    lines = [one("train_project_over_bound", "(b)/(c) training, share of the backbone bound"),
             one("infer_b1_speedup", "(a)/(b) inference time per image at batch 1, speed-up"),
             one("infer_bN_project_over_stock", f"(b)/(a) inference images/s at batch {result['settings']['infer_batch']}")]
    if result.get("loader"):
        lines.append(f"DataLoader alone / (b) training step: {result['loader']['over_train_step']:.2f}x")
    lines.append(one("train_project_over_stock", "(b)/(a) training images/s"))
    return lines


def _header(result: dict) -> list[str]:
    e, s = result["environment"], result["settings"]
    fast = ", ".join(f"{k}={s[k]}" for k in ("channels_last", "separable_roi_align", "train.cpu_bf16",
                                                "autocast_bf16"))
    return [f"device: {e['device']} ({e['device_name']}); threads {e['threads']} (physical cores "
            f"{e['physical_cores']}, logical {e['logical_cpus']}); torch {e['torch']}, torchvision "
            f"{e['torchvision']}; native CPU bf16: {e['cpu_bf16_native']}",
            f"{s['tag']}; batch {s['batch_size']} x {s['image_size']}px, {s['lesions_per_image']} lesion(s)/image; "
            f"{s['rpn_proposals_train']} proposals, {s['box_batch_size_per_image']} RoIs/image; {s['optimizer']}, "
            f"grad clip {s['grad_clip']}",
            f"fast path: {fast}",
            f"{s['warmup']} warm-up + {s['repeats']} repetitions x {s['iters_per_repeat']} iterations, interleaved; "
            f"median [min, max]"]


def format_text(result: dict) -> str:
    """Header, table and ratios for a terminal."""
    lines = _header(result) + [""]
    width = max(len(r["case"]) for r in rows(result))
    for r in rows(result):
        memory = ("" if r["peak_memory_mib"] is None else
                  f"   peak {r['peak_memory_mib']:.0f} MiB (+{r['memory_increase_mib']:.0f})")
        lines.append(f"{r['case']:<{width}}  {r['measure']:<30} {r['median']:>9.2f}  [{r['min']:.2f}, {r['max']:.2f}]"
                     f"{memory}")
    return "\n".join(lines + [""] + ratio_lines(result)) + "\n"


def markdown(result: dict) -> str:
    table = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows(result):
        table.append("| " + " | ".join("" if r[c] is None else str(r[c]) for c in COLUMNS) + " |")
    notes = [f"- {line}" for line in ratio_lines(result)]
    return "\n".join(["# Benchmark", ""] + [f"{line}  " for line in _header(result)] + [""] + table + [""]
                     + notes) + "\n"


def write_tables(result: dict, folder: str | Path) -> tuple[Path, Path]:
    """``<folder>/benchmark.csv`` (the rows, then the environment and settings as ``#`` lines) and
    ``<folder>/benchmark.md``, each written atomically."""
    folder = Path(folder)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(result))
    for line in _header(result) + ratio_lines(result):
        buffer.write(f"# {line}\n")
    return (bio.write_text(folder / "benchmark.csv", buffer.getvalue()),
            bio.write_text(folder / "benchmark.md", markdown(result)))
