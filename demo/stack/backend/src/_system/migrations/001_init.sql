-- 001: tenants, users and documents
CREATE TABLE IF NOT EXISTS tenants (
  id              text PRIMARY KEY,
  name            text NOT NULL,
  database_schema text NOT NULL DEFAULT 'public',
  created_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenants (id, name) VALUES ('admin', 'MotoVaultPro Admin') ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS users (
  id         text PRIMARY KEY,           -- Auth0 subject
  tenant_id  text NOT NULL REFERENCES tenants(id),
  email      text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS documents (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  vehicle_id   bigint NOT NULL,
  file_name    text NOT NULL,
  storage_key  text NOT NULL UNIQUE,
  content_type text NOT NULL,
  size_bytes   bigint NOT NULL,
  uploaded_at  timestamptz NOT NULL DEFAULT now()
);
