// The event types Herald's services publish today (from the gateway's seed
// integration service). Any other valid type may be published too; these get
// typed helpers in the backend publisher.
export const EVENT_CATALOGUE = {
  authentication: [
    'authentication.login.success', 'authentication.login.failure', 'authentication.logout',
    'authentication.mfa.challenge', 'authentication.mfa.success', 'authentication.password.change',
    'authentication.token.refresh',
  ],
  security: ['security.high_risk.detected', 'security.rate_limit.exceeded', 'security.suspicious.activity', 'security.validation.failed'],
  session: ['session.created', 'session.expired', 'session.revoked', 'session.concurrent_limit'],
  admin: ['admin.user.created', 'admin.user.updated', 'admin.user.deleted', 'admin.role.assigned', 'admin.permission.granted'],
  system: ['system.maintenance.scheduled', 'system.error.critical', 'system.performance.degraded'],
} as const

export type EventFamily = keyof typeof EVENT_CATALOGUE
export type CatalogueType<F extends EventFamily = EventFamily> = typeof EVENT_CATALOGUE[F][number]
