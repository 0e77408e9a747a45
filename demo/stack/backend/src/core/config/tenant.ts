export interface TenantConfig {
  id: string;
  name: string;
  databaseSchema: string;
  platformServicesUrl: string;
}

const DEFAULT_TENANT: TenantConfig = {
  id: 'admin',
  name: 'MotoVaultPro Admin',
  databaseSchema: 'public',
  platformServicesUrl: 'http://mvp-platform:8000',
};

const cache = new Map<string, TenantConfig>([[DEFAULT_TENANT.id, DEFAULT_TENANT]]);

export async function getTenantConfig(id: string): Promise<TenantConfig | undefined> {
  return cache.get(id);
}

export function isAdminTenant(id: string): boolean {
  return id === DEFAULT_TENANT.id;
}
