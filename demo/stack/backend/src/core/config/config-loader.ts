import { readFileSync } from 'fs';
import { parse } from 'yaml';

const CONFIG_FILE = process.env.CONFIG_FILE ?? '/app/config/production.yml';
const SECRETS_DIR = process.env.SECRETS_DIR ?? '/run/secrets';

const secret = (name: string) => readFileSync(`${SECRETS_DIR}/${name}`, 'utf8').trim();

export function loadConfig() {
  const file = parse(readFileSync(CONFIG_FILE, 'utf8'));
  return {
    logLevel: file.server?.log_level ?? 'info',
    database: {
      host: file.database.host,            // admin-postgres (before Phase 1: mvp-postgres)
      port: file.database.port ?? 5432,
      name: file.database.name,
      user: file.database.user,
      password: secret('postgres-password.txt'),
    },
    redis: { url: `redis://${file.redis.host}:${file.redis.port ?? 6379}` },
    storage: {
      endpoint: file.minio.endpoint,
      bucket: file.minio.bucket,
      accessKey: file.minio.access_key,
      secretKeyFile: `${SECRETS_DIR}/minio-secret-key.txt`,
    },
    auth0: {
      domain: file.auth0.domain,
      audience: file.auth0.audience,
      clientId: file.auth0.client_id,
      clientSecret: secret('auth0-client-secret.txt'),
    },
    platform: { vehiclesUrl: file.platform.vehicles_api_url },
  };
}
