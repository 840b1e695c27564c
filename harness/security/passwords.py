"""Password strength for host.redis (requirepass) and host.db_password: length, estimated entropy,
bits per character and repeated runs against `PasswordRules`; what is wrong, never the password.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from harness.security.config import PasswordRules


def entropy_bits(password: str) -> float:
    """length x log2(the alphabet of the character classes used); lower-case hex counts as 16."""
    if not password:
        return 0.0
    if re.fullmatch(r"[0-9a-f]+", password) or re.fullmatch(r"[0-9A-F]+", password):
        pool = 16
    else:
        pool = (26 * bool(re.search(r"[a-z]", password)) + 26 * bool(re.search(r"[A-Z]", password))
                + 10 * bool(re.search(r"[0-9]", password)) + 33 * bool(re.search(r"[^A-Za-z0-9]", password)))
    return len(password) * math.log2(max(pool, 2))


def shannon_bits_per_char(password: str) -> float:
    counts = Counter(password)
    n = len(password)
    return -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0


def longest_repeat(password: str, cap: int = 256) -> int:
    """Length of the longest substring that occurs twice (overlapping allowed)."""
    text = password[:cap]
    best = 0
    for i in range(len(text)):
        for j in range(i + 1, len(text)):
            k = 0
            while j + k < len(text) and text[i + k] == text[j + k]:
                k += 1
            best = max(best, k)
    return best


def password_problems(password: str, rules: PasswordRules) -> list[str]:
    """What makes a password weak (empty when none); never the password itself."""
    out: list[str] = []
    if len(password) < rules.min_length:
        out.append(f"{len(password)} characters (need >= {rules.min_length})")
    bits = entropy_bits(password)
    if bits < rules.min_entropy_bits:
        out.append(f"about {bits:.0f} bits of entropy (need >= {rules.min_entropy_bits:g})")
    shannon = shannon_bits_per_char(password)
    if shannon < rules.min_shannon_bits_per_char:
        out.append(f"{shannon:.2f} bits per character (need >= {rules.min_shannon_bits_per_char:g}: too few distinct "
                   "characters)")
    repeat = longest_repeat(password)
    if repeat > rules.max_repeated_substring:
        out.append(f"repeats a {repeat}-character run (at most {rules.max_repeated_substring})")
    return out
