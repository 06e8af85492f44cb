import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { ErrorReply } from './schemas.js'

/** OpenAPI of the HTTP API at /docs (JSON at /docs/json). */
export default fp(async function docs (app) {
  app.addSchema(ErrorReply)
  await app.register(swagger, {
    openapi: {
      info: { title: 'Herald HTTP API', version: app.herald.version, description: 'Publish events and notifications to connected clients; read cluster stats.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'an API key from API_KEYS, or a JWT with role service' } } },
    },
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })
}, { name: 'herald-docs' })
