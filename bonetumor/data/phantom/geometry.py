"""Geometry the phantom draws with: a long bone as a solid of revolution with a radius profile
(:class:`Bone`), projected path lengths (chords), windows on the canvas, band-pass noise textures and
irregular ellipse outlines."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def chord(radius, dist):
    """Projected path length through a cylinder/sphere of ``radius`` at ``dist`` from its axis/centre."""
    return 2.0 * np.sqrt(np.maximum(radius * radius - dist * dist, 0.0))


class Bone:
    """A long bone: articular end at ``end`` (x, y), shaft along unit vector ``axis``; radius profile with a
    domed epiphysis (length ``e``), a flaring metaphysis (length ``m``, radius ``Rm`` → ``Rd``)."""

    def __init__(self, end, axis, Rd, Rm, e, m, cortex, physis_open):
        self.ex, self.ey = end
        self.dx, self.dy = axis
        self.Rd, self.Rm, self.e, self.m = Rd, Rm, e, m
        self.cd, self.cm = cortex * Rd, 0.06 * Rm
        self.physis_open = physis_open

    def uv(self, x, y):
        u = (x - self.ex) * self.dx + (y - self.ey) * self.dy
        v = (y - self.ey) * self.dx - (x - self.ex) * self.dy
        return u, v

    def xy(self, u, v):
        return self.ex + u * self.dx - v * self.dy, self.ey + u * self.dy + v * self.dx

    def radius(self, u):
        u = np.asarray(u, np.float32)
        x = np.clip((self.e - u) / self.e, 0.0, 1.0)
        cap = self.Rm * np.sqrt(np.sqrt(np.clip(1.0 - x ** 4, 0.0, 1.0)))
        t = np.clip((u - self.e) / self.m, 0.0, 1.0)
        shaft = self.Rd + (self.Rm - self.Rd) * 0.5 * (1 + np.cos(np.pi * t))
        return np.where(u < 0, 0.0, np.where(u < self.e, cap, shaft)).astype(np.float32)

    def cortex(self, u):
        return self.cm + (self.cd - self.cm) * smoothstep((u - self.e - 0.4 * self.m) / (0.9 * self.m))

    def attenuation(self, u, v, tex, mu_c, mu_t, mu_marrow):
        R = self.radius(u)
        Ri = np.maximum(R - self.cortex(u), 0.0)
        t_out, t_in = chord(R, v), chord(Ri, v)
        dens = mu_marrow + (mu_t - mu_marrow) * (1.0 - smoothstep((u - self.e) / (1.3 * self.m)))
        wave = 0.08 * self.Rm * np.sin(v * (2.2 / max(self.Rm, 1e-3)))
        plate = np.exp(-((u - self.e - wave) / max(0.06 * self.Rm, 0.7)) ** 2)
        dens = dens * (1.0 - 0.75 * plate) if self.physis_open else dens * (1.0 + 0.5 * plate)
        return mu_c * (t_out - t_in) + dens * tex * t_in, t_out


def window(shape, cx, cy, half):
    """The canvas slices of a square of half-side ``half`` around (``cx``, ``cy``), or ``None`` if off it."""
    H, W = shape
    y0, y1 = int(max(0, math.floor(cy - half))), int(min(H, math.ceil(cy + half) + 1))
    x0, x1 = int(max(0, math.floor(cx - half))), int(min(W, math.ceil(cx + half) + 1))
    if y1 <= y0 or x1 <= x0:
        return None
    return (slice(y0, y1), slice(x0, x1))


def bandpass(rng, shape, s1, s2):
    """Unit-variance band-pass noise: Gaussian-filtered white noise at ``s1`` minus the same at ``s2``."""
    n = rng.standard_normal(shape, dtype=np.float32)
    a = ndimage.gaussian_filter(n, s1, truncate=3.0) if s1 > 0.3 else n
    b = ndimage.gaussian_filter(n, s2, truncate=3.0)
    d = a - b
    return d / (d.std() + 1e-6)


def harmonics(rng, strength, kmax):
    """Random angular harmonics ``(k, amplitude, phase)``, k = 2..kmax, that make an outline irregular."""
    ks = np.arange(2, kmax + 1)
    amps = strength * rng.uniform(0.3, 1.0, len(ks)) / ks ** 0.7
    return list(zip(ks.tolist(), amps.tolist(), rng.uniform(0, 2 * np.pi, len(ks)).tolist()))


def ellipse_r(u, v, uc, vc, a, b, harm=()):
    """Normalised radius of (``u``, ``v``) in an ellipse (< 1 inside) whose outline is bent by ``harm``."""
    du, dv = (u - uc) / a, (v - vc) / b
    rho = np.sqrt(du * du + dv * dv)
    if harm:
        ang = np.arctan2(dv, du)
        f = sum(amp * np.cos(k * ang + ph) for k, amp, ph in harm)
        rho = rho / (1.0 + f)
    return rho


def segment_dist(u, v, p, q):
    """Distance of (``u``, ``v``) from the segment ``p``–``q``."""
    pu, pv = p
    qu, qv = q
    du, dv = qu - pu, qv - pv
    t = np.clip(((u - pu) * du + (v - pv) * dv) / (du * du + dv * dv + 1e-9), 0, 1)
    return np.hypot(u - pu - t * du, v - pv - t * dv)
