import type { FastifyInstance } from 'fastify';
import { isAdminTenant } from '../../core/config/tenant';
import { TenantService } from './tenant.service';

export async function tenantRoutes(app: FastifyInstance) {
  const service = new TenantService(app.db);

  app.addHook('preHandler', async (request, reply) => {
    if (!isAdminTenant((request as any).tenant?.id)) {
      return reply.code(403).send({ error: 'admin tenant only' });
    }
  });

  app.get('/tenants', async () => service.list());
  app.post<{ Body: { id: string; name: string } }>('/tenants', async (request, reply) => {
    await service.create(request.body.id, request.body.name);
    return reply.code(201).send();
  });
}
