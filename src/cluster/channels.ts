// Redis channel names. One per user (subscribed while a node holds that
// user's connections), one broadcast, one for admins.
export interface Channels {
  user (userId: string): string
  readonly userPrefix: string
  readonly broadcast: string
  readonly admin: string
}

export function createChannels (prefix: string): Channels {
  const userPrefix = `${prefix}u:`
  return {
    user: (userId) => userPrefix + userId,
    userPrefix,
    broadcast: `${prefix}b`,
    admin: `${prefix}a`,
  }
}
