import type { Stream } from '../protocol/streams.js'

// Redis channel names. One per user (subscribed while a node holds that
// user's connections), one per group (while it holds a member's), one broadcast, one for admins, one for node-to-node
// control messages that every node hears.
//
// The channels of streams carry a hash tag ({u:<id>}, {g:<name>}, {b}, {a}) and the
// stream's keys are named after their channel (src/backend/streams.ts: the
// channel plus `:s` and `:m`), so a stream, its meta and its channel share one
// hash slot on a Redis Cluster: the append and the publish are one script
// there too. A tag is what lies between the first `{` and the first `}` after
// it: an id holding `}` cuts the tag short, but the same way for all three
// names, so they still share a slot.
export interface Channels {
  user (userId: string): string
  /** every user channel starts with this */
  readonly userPrefix: string
  /** a group's channel, subscribed while a node holds connections of its members (names: src/protocol/groups.ts, no braces) */
  group (name: string): string
  readonly broadcast: string
  readonly admin: string
  readonly control: string
  /** this node's own loopback probe channel */
  probe (serverId: string): string
  /** the channel a stream is published on, whose name its keys extend */
  of (stream: Stream): string
  /** true when `channel` is the channel of `userId` */
  isUserChannelOf (channel: string, userId: string): boolean
}

export function createChannels (prefix: string): Channels {
  const userPrefix = `${prefix}{u:`
  const broadcast = `${prefix}{b}`
  const admin = `${prefix}{a}`
  const user = (userId: string): string => `${userPrefix}${userId}}`
  const group = (name: string): string => `${prefix}{g:${name}}`
  return {
    user,
    userPrefix,
    group,
    broadcast,
    admin,
    control: `${prefix}c`,
    probe: (serverId) => `${prefix}p:${serverId}`,
    of: (s) => s.kind === 'user' ? user(s.userId) : s.kind === 'group' ? group(s.group) : s.kind === 'broadcast' ? broadcast : admin,
    // Without building the name: the hub asks this for every user message.
    isUserChannelOf: (channel, userId) => userId.length > 0 &&
      channel.length === userPrefix.length + userId.length + 1 &&
      channel.startsWith(userPrefix) && channel.startsWith(userId, userPrefix.length) && channel.endsWith('}'),
  }
}
