"""Offline VIN decoding: check digit, model year and manufacturer (WMI)."""
TRANSLIT = {c: v for v, cs in enumerate(["", "AJ", "BKS", "CLT", "DMU", "ENV", "FW", "GPX", "HY", "RZ"]) for c in cs}
WEIGHTS = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]
YEARS = "ABCDEFGHJKLMNPRSTVWXY123456789"
WMI = {"1FT": "Ford", "1G1": "Chevrolet", "1HG": "Honda", "JHM": "Honda", "JT2": "Toyota", "WBA": "BMW"}


def _value(ch: str) -> int:
    return int(ch) if ch.isdigit() else TRANSLIT[ch]


def decode_vin(vin: str) -> dict:
    vin = vin.strip().upper()
    if len(vin) != 17 or any(c in "IOQ" for c in vin):
        raise ValueError(f"not a VIN: {vin!r}")
    check = sum(_value(c) * w for c, w in zip(vin, WEIGHTS)) % 11
    if vin[8] != ("X" if check == 10 else str(check)):
        raise ValueError("bad check digit")
    year = 2010 + YEARS.index(vin[9]) if vin[9] in YEARS else None
    return {"vin": vin, "year": year, "make": WMI.get(vin[:3], "Unknown"), "model": None}
