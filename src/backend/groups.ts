// Group membership set through the API (PUT/DELETE /api/groups/:group/members/:userId):
// who is in `group:<name>` besides what tokens' `groups` claims say. Kept
// both ways, members per group (for listings) and groups per user (what a
// node reads when a user connects), so neither read scans. Memory
// (groups-memory.ts) and Redis (groups-redis.ts) run the contract suite
// test/backend/groups.test.ts.
//
// On Redis the two sets carry the hash tags of the group's and the user's
// channels (`<prefix>{g:<name>}:members`, `<prefix>{u:<id>}:groups`), so each
// lives on the shard that carries that group's or user's events. A change
// writes the user's set first, then makes the group's agree with it: the
// user's set is what delivery follows; a change cut between the two (Redis
// lost mid-way) leaves only the listing behind, and the same call again
// completes it.

/** Groups one user may be a member of through the API (a token's claim adds its own, at most 100). */
export const MAX_GROUPS_PER_USER = 1000

export interface GroupMembers {
  /** at most the `limit` asked for, sorted */
  members: string[]
  /** how many there are */
  total: number
}

export interface GroupStore {
  /**
   * Makes `userId` a member of `group`: true when it was not one; false
   * when it was. Refuses (rejects with GroupLimit) past MAX_GROUPS_PER_USER.
   */
  add (group: string, userId: string): Promise<boolean>
  /** true when it was a member */
  remove (group: string, userId: string): Promise<boolean>
  members (group: string, limit: number): Promise<GroupMembers>
  /** the groups the API made `userId` a member of */
  groupsOf (userId: string): Promise<string[]>
}

export class GroupLimit extends Error {
  constructor () { super(`a user may be a member of at most ${MAX_GROUPS_PER_USER} groups through the API`) }
}

export const groupKeys = (prefix: string) => ({
  members: (group: string): string => `${prefix}{g:${group}}:members`,
  groupsOf: (userId: string): string => `${prefix}{u:${userId}}:groups`,
})
