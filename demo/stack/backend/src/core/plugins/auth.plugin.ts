import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';

export interface Auth0Options {
  domain: string;
  audience: string;
  clientId: string;
  clientSecret: string;
}

export const authPlugin = fp(async (app: FastifyInstance, opts: { auth0: Auth0Options }) => {
  const issuer = `https://${opts.auth0.domain}/`;

  app.decorate('authenticate', async (request: FastifyRequest) => {
    await (request as any).jwtVerify({ allowedIss: issuer, allowedAud: opts.auth0.audience });
    // Multi-tenant: the tenant claim travels with the token and is read by tenantMiddleware.
    const tenant = (request as any).user?.['https://motovaultpro.com/tenant_id'];
    if (!tenant) throw app.httpErrors.forbidden('token has no tenant claim');
  });
});
