import { Client } from 'minio';
import { readFileSync } from 'fs';
import type { Readable } from 'stream';
import type { StorageAdapter, StorageConfig } from './storage.adapter';

export class MinioAdapter implements StorageAdapter {
  private readonly client: Client;

  constructor(private readonly config: StorageConfig) {
    const url = new URL(config.endpoint);
    this.client = new Client({
      endPoint: url.hostname,
      port: Number(url.port || 9000),
      useSSL: url.protocol === 'https:',
      accessKey: config.accessKey,
      secretKey: readFileSync(config.secretKeyFile, 'utf8').trim(),
    });
  }

  async put(key: string, body: Buffer | Readable, contentType = 'application/octet-stream') {
    await this.client.putObject(this.config.bucket, key, body, undefined, { 'Content-Type': contentType });
  }

  get(key: string): Promise<Readable> {
    return this.client.getObject(this.config.bucket, key);
  }

  async delete(key: string) {
    await this.client.removeObject(this.config.bucket, key);
  }

  async exists(key: string) {
    return this.client.statObject(this.config.bucket, key).then(() => true, () => false);
  }
}

export const createStorage = (config: StorageConfig): StorageAdapter => new MinioAdapter(config);
