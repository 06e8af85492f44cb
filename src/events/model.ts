// What services publish and clients receive: the event and notification
// objects of the HTTP API and of `event`/`notification` frames (docs/protocol.md).

export interface HeraldEvent {
  id: string
  type: string
  timestamp: string
  userId?: string
  sessionId?: string
  data: Record<string, unknown>
}

export const NOTIFICATION_LEVELS = ['info', 'success', 'warning', 'error', 'critical'] as const
export type NotificationLevel = typeof NOTIFICATION_LEVELS[number]

export interface HeraldNotification {
  id: string
  level: NotificationLevel
  title: string
  message: string
  data?: Record<string, unknown>
  timestamp: string
}

export interface EventInput {
  type: string
  userId?: string
  sessionId?: string
  data?: Record<string, unknown>
}

export interface NotificationInput {
  level: NotificationLevel
  title: string
  message: string
  data?: Record<string, unknown>
}
