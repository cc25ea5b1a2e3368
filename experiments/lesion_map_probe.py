"""Can the backbone alone learn where v2's lesions are? A probe for issue 12's recipe log.

Trains only the quick profile's VGG-19 backbone and a lesion-map head (:mod:`bonetumor.modeling.lesion_map`:
every stride-16 cell labelled "a lesion touches it" or not, class-balanced cross-entropy) on the phantom's
training split, without the RPN and RoI heads that make Mask R-CNN slow on a CPU, and reports per epoch the
training and validation loss, the validation cell-level AUC (lesion cells against background cells) and the
validation tumour-vs-normal AUC of each image's highest cell probability. Never the test split.

    python experiments/lesion_map_probe.py OUT.csv [--epochs 30] [--batch 8] [--lr 0.002] [--data FOLDER]
                                               [--set KEY=VALUE ...]
"""

import argparse
import csv
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from bonetumor import config, pipeline
from bonetumor.data.dataset import BoneTumourDataset, collate_fn
from bonetumor.modeling.lesion_map import LesionMapHead, balanced_bce, lesion_cells
from bonetumor.modeling.vgg_maskrcnn import vgg19_features


def _batch(images, targets, mean, std):
    """Normalised images zero-padded to one size divisible by 32 (as torchvision batches them), and each
    image's lesion cells."""
    padded = [max(i.shape[d] for i in images) for d in (-2, -1)]
    padded = [-(-p // 32) * 32 for p in padded]
    x = torch.stack([torch.nn.functional.pad((i - mean) / std, (0, padded[1] - i.shape[-1], 0, padded[0] - i.shape[-2]))
                     for i in images])
    shape = (padded[0] // 16, padded[1] // 16)
    cells = torch.stack([lesion_cells(t["masks"], shape, tuple(padded)) for t in targets])
    return x, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--data", help="BTXRD-layout folder (default: the quick profile's phantom)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    settings = config.load("quick", config.parse_overrides(args.set), data=args.data)
    torch.manual_seed(settings.seed)
    prepared = pipeline.prepare(settings, progress=False)
    train_records, val_records = prepared.split("train"), prepared.split("val")
    mean, std = pipeline.normalisation(train_records)
    mean, std = torch.tensor(mean[0]), torch.tensor(std[0])
    features, _ = vgg19_features(settings.model.width, settings.model.backbone, pretrained=False)
    channels = [m for m in features.modules() if isinstance(m, torch.nn.Conv2d)][-1].out_channels
    model = torch.nn.Sequential(features, LesionMapHead(channels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=settings.train.weight_decay)
    train_loader = torch.utils.data.DataLoader(BoneTumourDataset(train_records, train=True), batch_size=args.batch,
                                               shuffle=True, collate_fn=collate_fn)
    val_loader = torch.utils.data.DataLoader(BoneTumourDataset(val_records, train=False), batch_size=args.batch,
                                             collate_fn=collate_fn)
    steps = args.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps, pct_start=0.1)
    rows = []
    for epoch in range(1, args.epochs + 1):
        start, losses = time.perf_counter(), []
        model.train()
        for images, targets in train_loader:
            x, cells = _batch(images, targets, mean, std)
            loss = balanced_bce(model(x)[:, 0], cells)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        model.eval()
        val_losses, probs, truth, image_scores, tumour = [], [], [], [], []
        with torch.no_grad():
            for images, targets in val_loader:
                x, cells = _batch(images, targets, mean, std)
                logits = model(x)[:, 0]
                val_losses.append(balanced_bce(logits, cells).item())
                probs.append(logits.sigmoid().flatten().numpy())
                truth.append(cells.flatten().numpy())
                image_scores += logits.flatten(1).amax(1).sigmoid().tolist()
                tumour += [int(len(t["boxes"]) > 0) for t in targets]
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": float(np.mean(val_losses)),
               "val_cell_auc": roc_auc_score(np.concatenate(truth) > 0.5, np.concatenate(probs)),
               "val_tumour_auc": roc_auc_score(tumour, image_scores), "seconds": time.perf_counter() - start}
        rows.append(row)
        print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
