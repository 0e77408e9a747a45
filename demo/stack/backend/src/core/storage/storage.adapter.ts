import type { Readable } from 'stream';

/** Where uploaded documents (receipts, titles, insurance cards) live. */
export interface StorageAdapter {
  put(key: string, body: Buffer | Readable, contentType?: string): Promise<void>;
  get(key: string): Promise<Readable>;
  delete(key: string): Promise<void>;
  exists(key: string): Promise<boolean>;
}

export interface StorageConfig {
  endpoint: string;
  bucket: string;
  accessKey: string;
  secretKeyFile: string;
}
