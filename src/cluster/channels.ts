// Redis channel names. One per user (subscribed while a node holds that
// user's connections), one broadcast, one for admins, one for node-to-node
// control messages that every node hears.
export interface Channels {
  user (userId: string): string
  readonly userPrefix: string
  readonly broadcast: string
  readonly admin: string
  readonly control: string
  /** this node's own loopback probe channel */
  probe (serverId: string): string
}

export function createChannels (prefix: string): Channels {
  const userPrefix = `${prefix}u:`
  return {
    user: (userId) => userPrefix + userId,
    userPrefix,
    broadcast: `${prefix}b`,
    admin: `${prefix}a`,
    control: `${prefix}c`,
    probe: (serverId) => `${prefix}p:${serverId}`,
  }
}
