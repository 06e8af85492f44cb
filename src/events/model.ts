// What services publish and clients receive: the types of the schemas in
// src/protocol/schema.ts, where the rules are stated once.
export { NOTIFICATION_LEVELS } from '../protocol/schema.js'
export type { EventInput, HeraldEvent, HeraldNotification, NotificationInput, NotificationLevel } from '../protocol/schema.js'
