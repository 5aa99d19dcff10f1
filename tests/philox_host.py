"""Triton's Philox4x32-10 and Box–Muller on the host, to check the SDE kernel's in-kernel noise exactly."""

import math


def host_philox_normals(seed: int, counter: int) -> list[float]:
    """Triton's Philox4x32-10 and Box–Muller, by hand on the host: the four normals of one 64-bit counter."""
    m = 2**32 - 1
    c = [counter & m, counter >> 32, 0, 0]
    k0, k1 = seed & m, (seed >> 32) & m
    for _ in range(10):
        a, b = 0xD2511F53, 0xCD9E8D57
        c0, c2 = c[0], c[2]
        c = [((b * c2) >> 32) ^ c[1] ^ k0, (b * c2) & m, ((a * c0) >> 32) ^ c[3] ^ k1, (a * c0) & m]
        k0, k1 = (k0 + 0x9E3779B9) & m, (k1 + 0xBB67AE85) & m

    def uniform(x):
        x = x - 2**32 if x >= 2**31 else x
        return (~x if x < 0 else x) * 4.6566127342e-10

    u = [uniform(x) for x in c]
    out = []
    for u1, u2 in ((u[0], u[1]), (u[2], u[3])):
        r = math.sqrt(-2.0 * math.log(max(1e-7, u1)))
        out += [r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)]
    return out
