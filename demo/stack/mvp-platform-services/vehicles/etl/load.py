"""Load the year/make/model catalogue (CSV export of the source DB) into vehicle_models."""
import csv
import os
import sys

import psycopg

DSN = os.environ.get("VEHICLES_DB_DSN", "postgresql://postgres@/vehicles?host=/run/postgresql")


def load(path: str) -> int:
    with open(path, newline="") as fh, psycopg.connect(DSN) as conn:
        rows = [(int(r["year"]), r["make"], r["model"]) for r in csv.DictReader(fh)]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO vehicle_models (year, make, model) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                rows,
            )
    return len(rows)


if __name__ == "__main__":
    print(f"loaded {load(sys.argv[1])} rows")
