"""Decimal text shared by the DS writers (pure string formatting, no pydicom)."""

from __future__ import annotations

__all__ = ["compact_decimal"]


def compact_decimal(text: str) -> str:
    """Drop a redundant ``.0``, trailing fraction zeros and exponent padding.

    ``"1.2500e+01"`` becomes ``"1.25e1"``, ``"3.000"`` becomes ``"3"`` and
    ``"5.0e+00"`` becomes ``"5"``.
    """
    mantissa, _, exponent = text.partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    if not exponent:
        return mantissa
    exp = int(exponent)
    return mantissa if exp == 0 else f"{mantissa}e{exp}"
