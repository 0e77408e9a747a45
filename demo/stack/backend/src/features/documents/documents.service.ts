import { randomUUID } from 'crypto';
import type { Pool } from 'pg';
import type { StorageAdapter } from '../../core/storage/storage.adapter';

export class DocumentsService {
  constructor(private readonly db: Pool, private readonly storage: StorageAdapter) {}

  async upload(vehicleId: string, fileName: string, body: Buffer, contentType: string) {
    const key = `vehicles/${vehicleId}/${randomUUID()}-${fileName}`;
    await this.storage.put(key, body, contentType);
    const { rows } = await this.db.query(
      `INSERT INTO documents (vehicle_id, file_name, storage_key, content_type, size_bytes)
       VALUES ($1, $2, $3, $4, $5) RETURNING id`,
      [vehicleId, fileName, key, contentType, body.length],
    );
    return rows[0].id as string;
  }

  async download(id: string) {
    const { rows } = await this.db.query('SELECT storage_key FROM documents WHERE id = $1', [id]);
    if (!rows.length) return undefined;
    return this.storage.get(rows[0].storage_key);
  }
}
