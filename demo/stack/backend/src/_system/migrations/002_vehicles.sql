-- 002: vehicles and their fuel logs
CREATE TABLE IF NOT EXISTS vehicles (
  id         bigserial PRIMARY KEY,
  tenant_id  text NOT NULL REFERENCES tenants(id),
  user_id    text,
  vin        text NOT NULL UNIQUE,
  year       int  NOT NULL CHECK (year BETWEEN 1900 AND 2100),
  make       text NOT NULL,
  model      text NOT NULL,
  nickname   text,
  odometer   int  NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS vehicles_tenant_idx ON vehicles (tenant_id);

CREATE TABLE IF NOT EXISTS fuel_logs (
  id         bigserial PRIMARY KEY,
  vehicle_id bigint NOT NULL REFERENCES vehicles(id) ON DELETE CASCADE,
  filled_at  date NOT NULL,
  liters     numeric(6,2) NOT NULL,
  odometer   int NOT NULL
);
