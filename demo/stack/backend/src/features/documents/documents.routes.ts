import type { FastifyInstance } from 'fastify';
import { DocumentsService } from './documents.service';

export async function documentsRoutes(app: FastifyInstance) {
  const service = new DocumentsService(app.db, app.storage);

  app.post<{ Params: { vehicleId: string } }>('/:vehicleId', async (request, reply) => {
    const file = await (request as any).file();
    const id = await service.upload(
      request.params.vehicleId, file.filename, await file.toBuffer(), file.mimetype,
    );
    return reply.code(201).send({ id });
  });

  app.get<{ Params: { id: string } }>('/file/:id', async (request, reply) => {
    const stream = await service.download(request.params.id);
    if (!stream) return reply.code(404).send({ error: 'document not found' });
    return reply.send(stream);
  });
}
