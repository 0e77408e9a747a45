#!/bin/bash
# mvp-platform: the files runbook phases 4 and 8 touch, then the platform database.
. "$(dirname "$0")/common.sh"
P=mvp-platform-services/vehicles
need_file $P/api/main.py 'def '
need_file $P/api/vin_decode.py 'def decode_vin'
need_file $P/etl/load.py 'def '
need_file $P/sql/001_schema.sql 'CREATE TABLE'
need_dir  secrets/platform '*'
need_sql vehicles
echo "ok: platform"
