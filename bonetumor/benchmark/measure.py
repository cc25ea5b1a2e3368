"""Timing: warm-up excluded, repetitions interleaved across the cases (so that a busy machine slows all of them
alike), synchronisation only at the timing boundaries, median and spread, peak memory per case."""

from __future__ import annotations

import copy
import os
import platform
import resource
import threading
import time
from typing import Callable

import numpy as np
import torch
import torchvision

from bonetumor.benchmark.workload import copy_weights, stock_model, synthetic_batch
from bonetumor.config import Settings
from bonetumor.engine.loop import make_loader, train_one_epoch
from bonetumor.engine.schedule import make_optimizer
from bonetumor.modeling.vgg_maskrcnn import (NEUTRAL_MEAN, NEUTRAL_STD, autocast_wanted, bf16_backbone,
                                             build_model, cpu_bf16_supported)

#: What each case measures: training images/s, inference ms per image at batch 1, inference images/s at a batch.
TRAIN, INFER_1, INFER_N = "train_images_per_s", "infer_ms_per_image_b1", "infer_images_per_s_bN"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _PeakMemory:
    """Peak memory of one measurement, MiB, and its rise over the memory at the start (``start``; on the CPU
    a lower bound, since the allocator reuses what earlier cases freed): ``torch.cuda.max_memory_allocated``
    on CUDA; on CPU the
    process's resident set, sampled every 50 ms by a thread (psutil), or the process's lifetime peak
    (``resource.getrusage``) when psutil is not installed."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self.start, self._stop = device, 0.0, 0.0, threading.Event()
        try:
            import psutil
            self._process = psutil.Process()
        except ImportError:
            self._process = None

    def _rss(self) -> float:
        if self._process is not None:
            return self._process.memory_info().rss / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        self.peak = self.start = self._rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def spread(values) -> dict:
    """Median, quartiles, min and max of ``values``."""
    v = np.asarray(values, float)
    q1, median, q3 = np.percentile(v, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "min": float(v.min()), "max": float(v.max()),
            "n": int(v.size)}


def _cases(settings: Settings, device: torch.device, batch: tuple[list, list], infer_batch: int, iters: int,
           seed: int) -> dict[tuple[str, str], Callable[[], float]]:
    """One closure per (model, measure); each runs ``iters`` units of work and returns the images done."""
    images, targets = batch
    torch.manual_seed(seed)
    project = build_model(settings.model.model_copy(update={"pretrained": False}), settings.data.image_size)
    stock = stock_model(settings.model, settings.data.image_size, NEUTRAL_MEAN, NEUTRAL_STD)
    copy_weights(project, stock)
    evals = {"stock": copy.deepcopy(stock).to(device).eval(), "project": copy.deepcopy(project).to(device).eval()}
    project.to(device).train()
    stock.to(device).train()
    amp = autocast_wanted(settings, device)
    opt_project, opt_stock = make_optimizer(project, settings), make_optimizer(stock, settings)
    pinned = [img.pin_memory() for img in images] if device.type == "cuda" else images
    many = [pinned[i % len(pinned)] for i in range(infer_batch)]

    def train_stock() -> float:  # torchvision's references/detection step
        for _ in range(iters):
            imgs = [img.to(device) for img in images]
            tgts = [{k: v.to(device) for k, v in t.items()} for t in targets]
            loss = sum(stock(imgs, tgts).values())
            opt_stock.zero_grad()
            loss.backward()
            opt_stock.step()
        return iters * len(images)

    def train_project() -> float:
        train_one_epoch(project, opt_project, [(pinned, targets)] * iters, device, 0, amp=amp,
                        grad_clip=settings.train.grad_clip)
        return iters * len(images)

    def bound() -> float:
        x = torch.stack(images).to(device, non_blocking=True)
        for _ in range(iters):
            with bf16_backbone(project, amp):
                project.backbone(x)["0"].sum().backward()
        project.backbone.zero_grad(set_to_none=True)
        return iters * len(images)

    def infer(name: str, imgs: list) -> Callable[[], float]:
        model = evals[name]

        def run() -> float:
            with torch.no_grad(), bf16_backbone(model, amp and name == "project"):
                for _ in range(iters):
                    model([img.to(device, non_blocking=True) for img in imgs])
            return iters * len(imgs)
        return run

    return {("stock", TRAIN): train_stock, ("project", TRAIN): train_project, ("bound", TRAIN): bound,
            ("stock", INFER_1): infer("stock", many[:1]), ("project", INFER_1): infer("project", many[:1]),
            ("stock", INFER_N): infer("stock", many), ("project", INFER_N): infer("project", many)}


def _time(fn: Callable[[], float], device: torch.device, memory: _PeakMemory) -> tuple[float, float]:
    with memory:
        _sync(device)
        start = time.perf_counter()
        images = fn()
        _sync(device)
        seconds = time.perf_counter() - start
    return images, seconds


def environment(device: torch.device) -> dict:
    """Where the numbers were measured: device name, threads, library versions, bfloat16 support."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as handle:
                name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), name)
        except OSError:
            pass
    try:
        import psutil
        cores = psutil.cpu_count(logical=False)
    except ImportError:
        cores = None
    return {"device": str(device), "device_name": name, "threads": torch.get_num_threads(),
            "physical_cores": cores, "logical_cpus": os.cpu_count(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "cpu_bf16_native": cpu_bf16_supported(),
            "cuda_bf16": bool(device.type == "cuda" and torch.cuda.is_bf16_supported())}


def benchmark(settings: Settings, device: str | torch.device = "cpu", repeats: int = 5, warmup: int = 2,
              iters: int = 2, infer_batch: int = 8, lesions: int = 1, seed: int = 0) -> dict:
    """Measure (a) stock, (b) project and (c) the backbone bound on one synthetic batch of the profile's
    ``train.batch_size`` images at ``data.image_size`` (see :mod:`bonetumor.benchmark`). Every case runs
    ``warmup`` untimed times, then ``repeats`` timed times of ``iters`` steps each, the cases interleaved and
    their order rotated each repetition. Returns environment, settings, per-case spreads, peak memory and
    the ratios (of medians, and the median of the per-repetition ratios, which a noisy machine disturbs less)."""
    device = torch.device(device)
    if repeats < 1 or iters < 1 or warmup < 0 or infer_batch < 1:
        raise ValueError("repeats, iters and infer_batch must be at least 1, warmup at least 0")
    batch = synthetic_batch(settings.train.batch_size, settings.data.image_size, lesions, seed)
    cases = _cases(settings, device, batch, infer_batch, iters, seed)
    memory = {key: _PeakMemory(device) for key in cases}
    for key, fn in cases.items():
        for _ in range(warmup):
            fn()
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
    peaks, increases = dict.fromkeys(cases, 0.0), dict.fromkeys(cases, 0.0)
    keys = list(cases)
    for r in range(repeats):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            images, seconds = _time(cases[key], device, memory[key])
            samples[key].append(seconds * 1000 / images if key[1] == INFER_1 else images / seconds)
            peaks[key] = max(peaks[key], memory[key].peak)
            increases[key] = max(increases[key], memory[key].peak - memory[key].start)
    results: dict[str, dict] = {}
    for (model, measure), values in samples.items():
        results.setdefault(model, {})[measure] = spread(values)
        results[model]["peak_memory_mib"] = max(results[model].get("peak_memory_mib", 0.0), peaks[(model, measure)])
        results[model]["memory_increase_mib"] = max(results[model].get("memory_increase_mib", 0.0),
                                                    increases[(model, measure)])
    return {"environment": environment(device), "settings": _described(settings, repeats, warmup, iters,
                                                                        infer_batch, lesions, seed, device),
            "results": results, "ratios": _ratios(samples)}


def _ratios(samples: dict) -> dict:
    def paired(a, b, invert=False):
        per = [(y / x if not invert else x / y) for x, y in zip(samples[a], samples[b])]
        return {"median_of_medians": (np.median(samples[a]) / np.median(samples[b]) if invert
                                      else np.median(samples[b]) / np.median(samples[a])),
                "paired": spread(per)}

    out = {"train_project_over_stock": paired(("stock", TRAIN), ("project", TRAIN)),
           "infer_b1_speedup": paired(("stock", INFER_1), ("project", INFER_1), invert=True),
           "infer_bN_project_over_stock": paired(("stock", INFER_N), ("project", INFER_N)),
           "train_project_over_bound": paired(("bound", TRAIN), ("project", TRAIN))}
    return {k: {"median_of_medians": float(v["median_of_medians"]), "paired": v["paired"]} for k, v in out.items()}


def _described(settings: Settings, repeats, warmup, iters, infer_batch, lesions, seed, device) -> dict:
    m, t = settings.model, settings.train
    return {"profile": settings.profile, "tag": settings.tag(), "image_size": settings.data.image_size,
            "batch_size": t.batch_size, "infer_batch": infer_batch, "lesions_per_image": lesions,
            "repeats": repeats, "warmup": warmup, "iters_per_repeat": iters, "seed": seed,
            "optimizer": t.optimizer, "grad_clip": t.grad_clip, "rpn_proposals_train": m.rpn_proposals_train,
            "rpn_proposals_test": m.rpn_proposals_test, "box_batch_size_per_image": m.box_batch_size_per_image,
            "channels_last": m.channels_last, "separable_roi_align": m.separable_roi_align,
            "train.amp": t.amp, "train.cpu_bf16": t.cpu_bf16, "autocast_bf16": autocast_wanted(settings, device)}


def loader_rate(dataset, settings: Settings, device: str | torch.device = "cpu", batches: int = 10,
                repeats: int = 3) -> dict:
    """Images/s of the project's training DataLoader alone (``train.num_workers`` workers, pinned memory on
    CUDA), timed from the first batch (worker start-up excluded) over up to ``batches`` batches."""
    device = torch.device(device)
    rates = []
    for r in range(repeats):
        loader = make_loader(dataset, settings.train.batch_size, True, settings.train.num_workers, device,
                             torch.Generator().manual_seed(settings.seed + r))
        it = iter(loader)
        next(it)
        start, images = time.perf_counter(), 0
        for _, (imgs, _targets) in zip(range(batches), it):
            images += len(imgs)
        seconds = time.perf_counter() - start
        if images:
            rates.append(images / seconds)
    if not rates:
        raise ValueError("the dataset is too small for a loader benchmark: it needs at least two batches")
    return {"images_per_s": spread(rates), "num_workers": settings.train.num_workers, "batches": batches}
