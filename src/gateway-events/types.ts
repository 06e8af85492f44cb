// The events the gateway publishes about what only it sees, by family: the
// names GATEWAY_EVENTS switches on and off. Each is a type of the seed
// catalogue (src/events/catalogue.ts).
export const GATEWAY_EVENT_FAMILIES = {
  session: ['session.created', 'session.expired', 'session.revoked', 'session.concurrent_limit'],
  security: ['security.rate_limit.exceeded', 'security.validation.failed', 'security.suspicious.activity'],
} as const

export type GatewayEventType = typeof GATEWAY_EVENT_FAMILIES[keyof typeof GATEWAY_EVENT_FAMILIES][number]
