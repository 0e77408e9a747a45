export { tenantRoutes } from './tenant.routes';
export { TenantService } from './tenant.service';
