#!/usr/bin/env python3
"""Benchmark SM2 on both backends in one run, and SM4-GCM per record (issue 15, parts 1-3).

Prints a markdown table for docs/performance.md ("SM2 on OpenSSL 3"): SM2 sign, verify,
encryption, decryption, key construction and key agreement on the OpenSSL backend and on
today's pure-Python gmssl path, with the speed-up; SM4-GCM seal and open per record, today's
path and the alternatives measured for it; and the machine's state (load before and after).

Figures are operations per second of *CPU time* (``time.process_time``): the machine is
shared, and wall-clock rates swing with the neighbours' load; wall-clock rates are printed
next to them. Each figure is the best of several interleaved rounds, so that the two
backends see the same load.

    .venv/bin/python scripts/bench_sm2.py [--quick]
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import os
import platform
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from ctypes import POINTER, byref, c_char_p, c_int, c_void_p
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cryptography
from cryptography.hazmat.backends.openssl import backend as cryptography_backend
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger_node.crypto import gmcrypto, libcrypto, sm2_curve, sm2_gmssl
from ledger_node.protocol.escrow import PAYLOAD_SIZE


@dataclass
class Rate:
    """Best operations per second over the rounds, by CPU time and by wall time."""

    cpu: float = 0.0
    wall: float = 0.0


def measure(operations: dict[str, Callable[[], object]], *, seconds: float, rounds: int,
            setup: Callable[[str], object] = lambda name: None) -> dict[str, Rate]:
    """Run each operation for ``seconds`` per round, rounds interleaved; keep the best.

    ``setup(name)`` runs before each operation's timed block (not timed): it selects the
    backend, which must not be switched per call (switching re-checks OpenSSL).
    """
    best = {name: Rate() for name in operations}
    for _ in range(rounds):
        for name, operation in operations.items():
            setup(name)
            count = 0
            cpu0, wall0 = time.process_time(), time.perf_counter()
            while time.perf_counter() - wall0 < seconds:
                for _ in range(8):
                    operation()
                count += 8
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            best[name].cpu = max(best[name].cpu, count / max(cpu, 1e-9))
            best[name].wall = max(best[name].wall, count / wall)
    return best


def row(*cells: str) -> None:
    print("| " + " | ".join(cells) + " |", flush=True)


def load() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])  # noqa: SIM115
    except OSError:
        return "?"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):  # noqa: SIM115
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# --------------------------------------------------------------------------------------------
# SM2
# --------------------------------------------------------------------------------------------


def sm2_operations(backend: gmcrypto.Sm2Backend) -> dict[str, Callable[[], object]]:
    """The SM2 operations a node runs, bound to ``backend`` (keys and inputs made up front)."""
    key = gmcrypto.generate_private_key()
    public = key.public_key()
    raw = public.raw
    peer = gmcrypto.generate_private_key().public_key()
    message = secrets.token_bytes(120)  # a batch digest with its framing, roughly
    with gmcrypto.sm2_backend_override(backend):
        signature = gmcrypto.sign(key, message)
        wrapped = gmcrypto.encrypt(public, secrets.token_bytes(16))
        for _ in range(4):  # the gmssl path builds its comb table for a key on the 3rd use
            gmcrypto.verify(public, message, signature)
            gmcrypto.encrypt(public, b"k")
    fresh = [gmcrypto.generate_private_key() for _ in range(64)]
    fresh_signed = [(k.public_key().raw, gmcrypto.sign(k, message)) for k in fresh]
    cursor = [0]

    def verify_new_key() -> None:
        raw_key, fresh_signature = fresh_signed[cursor[0] % len(fresh_signed)]
        cursor[0] += 1
        # Forget every per-key cache, on both backends: EVP_PKEYs, comb tables, Z_A.
        gmcrypto._native_public.cache_clear()
        sm2_gmssl._uses.clear()
        sm2_gmssl._key_table.cache_clear()
        sm2_curve.z.cache_clear()
        gmcrypto.verify(gmcrypto.SM2PublicKey.from_raw(raw_key), message, fresh_signature)

    return {
        "sign": lambda: gmcrypto.sign(key, message),
        "verify (a node's recurring key)":
            lambda: gmcrypto.verify(gmcrypto.SM2PublicKey.from_raw(raw), message, signature),
        "verify (a key never seen before)": verify_new_key,
        "encrypt a 16-byte batch key": lambda: gmcrypto.encrypt(public, b"sixteen byte key"),
        "decrypt it (regulator)": lambda: gmcrypto.decrypt(key, wrapped),
        "key from scalar (d·G)": lambda: gmcrypto.SM2PrivateKey(key.d),
        "pairwise key agreement (d·P)": lambda: gmcrypto.shared_point(key, peer),
    }


def bench_sm2(seconds: float, rounds: int) -> None:
    names = list(sm2_operations("openssl"))
    native = sm2_operations("openssl")
    python = sm2_operations("gmssl")
    both: dict[str, Callable[[], object]] = {}
    for name in names:
        both[f"openssl:{name}"] = native[name]
        both[f"gmssl:{name}"] = python[name]
    rates = measure(both, seconds=seconds, rounds=rounds,
                    setup=lambda name: gmcrypto.set_sm2_backend(
                        "openssl" if name.startswith("openssl:") else "gmssl"))
    gmcrypto.set_sm2_backend("openssl")
    goals = {"sign": 2.0, "verify (a node's recurring key)": 5.0}
    row("SM2 operation", "OpenSSL 3 (/s CPU; wall)", "gmssl Python (/s CPU; wall)",
        "speed-up (CPU)", "goal")
    row("---", "---", "---", "---", "---")
    for name in names:
        ours, theirs = rates[f"openssl:{name}"], rates[f"gmssl:{name}"]
        ratio = ours.cpu / theirs.cpu
        goal = goals.get(name)
        verdict = "" if goal is None else f"≥ {goal:.0f}×: {'met' if ratio >= goal else 'NOT met'}"
        row(name, f"{ours.cpu:,.0f}; {ours.wall:,.0f}", f"{theirs.cpu:,.0f}; {theirs.wall:,.0f}",
            f"{ratio:,.1f}×", verdict)


def bench_threads(seconds: float) -> None:
    """SM2 signing on the OpenSSL backend from 1 and 2 threads (ctypes drops the GIL)."""
    key = gmcrypto.generate_private_key()
    message = secrets.token_bytes(120)
    gmcrypto.sign(key, message)

    def run(threads: int) -> tuple[float, float]:
        """(signatures per wall second, CPU seconds per wall second) with ``threads``."""
        counts = [0] * threads
        cpu0, wall0 = time.process_time(), time.perf_counter()
        stop = wall0 + seconds

        def work(slot: int) -> None:
            while time.perf_counter() < stop:
                gmcrypto.sign(key, message)
                counts[slot] += 1

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        wall = time.perf_counter() - wall0
        return sum(counts) / wall, (time.process_time() - cpu0) / wall

    (one, one_cpu), (two, two_cpu) = run(1), run(2)
    print(f"\nOpenSSL SM2 signing, one key shared by the threads, wall clock: 1 thread "
          f"{one:,.0f} /s ({one_cpu:.2f} CPU s per s), 2 threads {two:,.0f} /s "
          f"({two_cpu:.2f} CPU s per s; {two / one:.2f}×); {os.cpu_count()} cores, "
          f"load {load()}")


def openssl_speed() -> str:
    binary = shutil.which("openssl")
    if binary is None:
        return "no openssl binary"
    result = subprocess.run([binary, "speed", "-seconds", "1", "sm2"], capture_output=True,
                            text=True, timeout=120)
    lines = [line for line in result.stdout.splitlines() if "SM2" in line]
    if not lines:
        return "openssl speed sm2 printed no figure"
    fields = lines[-1].split()
    return f"sign {fields[-2]} /s, verify {fields[-1]} /s"


# --------------------------------------------------------------------------------------------
# SM4-GCM per record
# --------------------------------------------------------------------------------------------


class _EvpGcm:
    """An EVP_CIPHER_CTX per direction, keyed once and re-initialised with the nonce only,
    through the same ctypes binding: the design issue 15 part 2 proposed. The bound
    OpenSSL 3.0 has no SM4-GCM, so it runs AES-128-GCM here as a stand-in: it measures the
    binding's per-record cost, not SM4's."""

    def __init__(self, cipher_name: bytes, key: bytes) -> None:
        cdll = libcrypto.library().cdll
        prototypes: dict[str, tuple[Any, list[Any]]] = {
            "EVP_CIPHER_fetch": (c_void_p, [c_void_p, c_char_p, c_char_p]),
            "EVP_CIPHER_CTX_new": (c_void_p, []),
            "EVP_EncryptInit_ex2": (c_int, [c_void_p, c_void_p, c_char_p, c_char_p, c_void_p]),
            "EVP_DecryptInit_ex2": (c_int, [c_void_p, c_void_p, c_char_p, c_char_p, c_void_p]),
            "EVP_EncryptUpdate": (c_int, [c_void_p, c_void_p, POINTER(c_int), c_char_p, c_int]),
            "EVP_DecryptUpdate": (c_int, [c_void_p, c_void_p, POINTER(c_int), c_char_p, c_int]),
            "EVP_EncryptFinal_ex": (c_int, [c_void_p, c_void_p, POINTER(c_int)]),
            "EVP_DecryptFinal_ex": (c_int, [c_void_p, c_void_p, POINTER(c_int)]),
            "EVP_CIPHER_CTX_ctrl": (c_int, [c_void_p, c_int, c_int, c_void_p]),
        }
        for name, (restype, argtypes) in prototypes.items():
            function = getattr(cdll, name)
            function.restype, function.argtypes = restype, argtypes
        self.c = cdll
        cipher = cdll.EVP_CIPHER_fetch(None, cipher_name, None)
        if not cipher:
            raise RuntimeError(f"no {cipher_name!r} in the bound libcrypto")
        self.enc = cdll.EVP_CIPHER_CTX_new()
        self.dec = cdll.EVP_CIPHER_CTX_new()
        cdll.EVP_EncryptInit_ex2(self.enc, cipher, key, None, None)
        cdll.EVP_DecryptInit_ex2(self.dec, cipher, key, None, None)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        c, nonce, size = self.c, secrets.token_bytes(12), c_int()
        out = ctypes.create_string_buffer(len(plaintext) + 16)
        c.EVP_EncryptInit_ex2(self.enc, None, None, nonce, None)
        c.EVP_EncryptUpdate(self.enc, None, byref(size), aad, len(aad))
        c.EVP_EncryptUpdate(self.enc, out, byref(size), plaintext, len(plaintext))
        c.EVP_EncryptFinal_ex(self.enc, None, byref(size))
        c.EVP_CIPHER_CTX_ctrl(self.enc, 0x10, 16, byref(out, len(plaintext)))  # GET_TAG
        return nonce + out.raw

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        c, size, body = self.c, c_int(), sealed[12:-16]
        out = ctypes.create_string_buffer(len(body))
        c.EVP_DecryptInit_ex2(self.dec, None, None, sealed[:12], None)
        c.EVP_DecryptUpdate(self.dec, None, byref(size), aad, len(aad))
        c.EVP_DecryptUpdate(self.dec, out, byref(size), body, len(body))
        c.EVP_CIPHER_CTX_ctrl(self.dec, 0x11, 16, sealed[-16:])  # SET_TAG
        if c.EVP_DecryptFinal_ex(self.dec, None, byref(size)) != 1:
            raise ValueError("tag mismatch")
        return out.raw


def bench_sm4(seconds: float, rounds: int) -> None:
    key, aad = gmcrypto.new_sm4_key(), secrets.token_bytes(32)  # AAD: the record commitment
    payload = secrets.token_bytes(PAYLOAD_SIZE)
    sealed = gmcrypto.sm4_gcm_encrypt(key, payload, aad)
    cached = functools.lru_cache(maxsize=64)(algorithms.SM4)

    def seal_cached_key_object() -> bytes:
        """sm4_gcm_encrypt as it would be with a per-key cache of the SM4 key object."""
        gmcrypto._check_sm4_key(key)
        nonce = secrets.token_bytes(12)
        encryptor = Cipher(cached(bytes(key)), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        return nonce + encryptor.update(payload) + encryptor.finalize() + encryptor.tag

    evp = _EvpGcm(b"AES-128-GCM", key)
    evp_sealed = evp.seal(payload, aad)
    assert evp.open(evp_sealed, aad) == payload
    assert AESGCM(key).decrypt(evp_sealed[:12], evp_sealed[12:], aad) == payload
    aesgcm = AESGCM(key)
    operations: dict[str, Callable[[], object]] = {
        "seal: sm4_gcm_encrypt (today, kept)": lambda: gmcrypto.sm4_gcm_encrypt(key, payload, aad),
        "open: sm4_gcm_decrypt (today, kept)": lambda: gmcrypto.sm4_gcm_decrypt(key, sealed, aad),
        "seal: SM4 key object cached per key": seal_cached_key_object,
        "seal: EVP context reused via ctypes (AES-128-GCM stand-in)":
            lambda: evp.seal(payload, aad),
        "open: EVP context reused via ctypes (AES-128-GCM stand-in)":
            lambda: evp.open(evp_sealed, aad),
        "seal: cryptography AESGCM, context reused in Rust (reference)":
            lambda: aesgcm.encrypt(secrets.token_bytes(12), payload, aad),
    }
    rates = measure(operations, seconds=seconds, rounds=rounds)
    print(f"\nSM4-GCM, one escrow payload ({PAYLOAD_SIZE} bytes) and a 32-byte AAD per record:\n")
    row("per record", "µs CPU", "µs wall")
    row("---", "---", "---")
    for name, rate in rates.items():
        row(name, f"{1e6 / rate.cpu:.2f}", f"{1e6 / rate.wall:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds")
    args = parser.parse_args(argv)
    seconds, rounds = (0.2, 2) if args.quick else (1.0, 4)
    lib = libcrypto.library()
    before = load()
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {cpu_model()}, {platform.machine()}, {os.cpu_count()} cores "
          f"(shared), {platform.platform()}")
    print(f"Python {platform.python_version()}; SM2 backend {gmcrypto.crypto_backends()['sm2']}"
          f" ({lib.path}); cryptography {cryptography.__version__} "
          f"({cryptography_backend.openssl_version_text()}) for SM4")
    print(f"openssl speed sm2 (same libcrypto, C loop): {openssl_speed()}")
    print(f"load average before: {before}\n")
    bench_sm2(seconds, rounds)
    bench_threads(seconds * 2)
    bench_sm4(seconds / 2, rounds)
    print(f"\nload average after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
