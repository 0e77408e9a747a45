import Fastify from 'fastify';
import { loadConfig } from './core/config/config-loader';
import { authPlugin } from './core/plugins/auth.plugin';
import { tenantMiddleware } from './core/middleware/tenant';
import { createStorage } from './core/storage/minio.adapter';
import { documentsRoutes } from './features/documents/documents.routes';
import { tenantRoutes } from './features/tenant-management';
import { platformVehiclesClient } from './features/vehicles/external/platform-vehicles.client';

export async function buildApp() {
  const config = loadConfig();
  const app = Fastify({ logger: { level: config.logLevel } });

  await app.register(authPlugin, { auth0: config.auth0 });
  app.addHook('preHandler', tenantMiddleware);

  app.decorate('storage', createStorage(config.storage));
  app.decorate('platform', platformVehiclesClient(config.platform.vehiclesUrl));

  app.get('/health', async () => ({ status: 'ok' }));
  await app.register(documentsRoutes, { prefix: '/api/documents' });
  await app.register(tenantRoutes, { prefix: '/api/admin' });
  return app;
}

if (require.main === module) {
  buildApp().then((app) => app.listen({ host: '0.0.0.0', port: 3001 }));
}
