import type { FastifyReply, FastifyRequest } from 'fastify';
import { getTenantConfig } from '../config/tenant';

/**
 * Resolves the tenant for every request from the `x-tenant-id` header (or the
 * Auth0 token claim) and attaches it to the request. Admin routes bypass it.
 */
export async function tenantMiddleware(request: FastifyRequest, reply: FastifyReply) {
  if (request.url.startsWith('/health')) return;

  const claim = (request as any).user?.['https://motovaultpro.com/tenant_id'];
  const tenantId = (request.headers['x-tenant-id'] as string | undefined) ?? claim;
  if (!tenantId) {
    return reply.code(400).send({ error: 'tenant id required' });
  }

  const tenant = await getTenantConfig(tenantId);
  if (!tenant) {
    return reply.code(404).send({ error: `unknown tenant ${tenantId}` });
  }
  (request as any).tenant = tenant;
}
