import type { Pool } from 'pg';
import type { TenantConfig } from '../../core/config/tenant';

export class TenantService {
  constructor(private readonly db: Pool) {}

  async list(): Promise<TenantConfig[]> {
    const { rows } = await this.db.query(
      'SELECT id, name, database_schema AS "databaseSchema" FROM tenants ORDER BY name',
    );
    return rows;
  }

  async create(id: string, name: string): Promise<void> {
    await this.db.query(
      'INSERT INTO tenants (id, name, database_schema) VALUES ($1, $2, $1)',
      [id, name],
    );
  }
}
