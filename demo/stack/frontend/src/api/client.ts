export interface Vehicle {
  id: number;
  vin: string;
  year: number;
  make: string;
  model: string;
  nickname?: string;
}

const BASE = import.meta.env.VITE_API_BASE_URL ?? '/api';
const TENANT = import.meta.env.VITE_TENANT_ID ?? 'admin';

export function api(token: string) {
  async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
    const res = await fetch(`${BASE}${path}`, {
      ...init,
      headers: { ...init.headers, authorization: `Bearer ${token}`, 'x-tenant-id': TENANT },
    });
    if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${path}: HTTP ${res.status}`);
    return res.json() as Promise<T>;
  }
  return {
    vehicles: () => request<Vehicle[]>('/vehicles'),
    decodeVin: (vin: string) => request<Vehicle>(`/vehicles/decode/${vin}`),
  };
}
