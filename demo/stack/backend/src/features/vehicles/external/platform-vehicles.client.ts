/** Client for the MVP platform vehicles service (VIN decode, make/model hierarchy). */
export interface VinDecodeResult {
  vin: string;
  year: number;
  make: string;
  model: string;
  trim?: string;
}

export function platformVehiclesClient(baseUrl: string, apiKey = process.env.PLATFORM_VEHICLES_API_KEY) {
  async function get<T>(path: string): Promise<T> {
    const res = await fetch(`${baseUrl}${path}`, {
      headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {},
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok) throw new Error(`platform ${path}: HTTP ${res.status}`);
    return (await res.json()) as T;
  }

  return {
    decodeVin: (vin: string) => get<VinDecodeResult>(`/api/v1/vehicles/vin/${encodeURIComponent(vin)}`),
    makes: (year: number) => get<string[]>(`/api/v1/vehicles/makes?year=${year}`),
    models: (year: number, make: string) =>
      get<string[]>(`/api/v1/vehicles/models?year=${year}&make=${encodeURIComponent(make)}`),
  };
}
