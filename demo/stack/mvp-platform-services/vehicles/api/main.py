"""MVP Platform vehicles API: VIN decode and the year/make/model hierarchy."""
import os

from fastapi import FastAPI, HTTPException
import psycopg

from .vin_decode import decode_vin

app = FastAPI(title="MVP Platform Vehicles")
DSN = os.environ.get("VEHICLES_DB_DSN", "postgresql://postgres@/vehicles?host=/run/postgresql")


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/api/v1/vehicles/vin/{vin}")
def vin(vin: str):
    try:
        return decode_vin(vin)
    except ValueError as err:
        raise HTTPException(status_code=400, detail=str(err)) from err


@app.get("/api/v1/vehicles/makes")
def makes(year: int):
    with psycopg.connect(DSN) as conn:
        rows = conn.execute(
            "SELECT DISTINCT make FROM vehicle_models WHERE year = %s ORDER BY make", (year,)
        ).fetchall()
    return [r[0] for r in rows]


@app.get("/api/v1/vehicles/models")
def models(year: int, make: str):
    with psycopg.connect(DSN) as conn:
        rows = conn.execute(
            "SELECT model FROM vehicle_models WHERE year = %s AND make = %s ORDER BY model",
            (year, make),
        ).fetchall()
    return [r[0] for r in rows]
