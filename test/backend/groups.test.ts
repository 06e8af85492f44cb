// The group membership contract (src/backend/groups.ts) on memory, a
// standalone Redis and a Redis Cluster: what the API sets is seen by every
// backend of the cluster, both ways (a group's members, a user's groups),
// bounded per user.
import t from 'tap'
import { GroupLimit, groupKeys, MAX_GROUPS_PER_USER } from '../../src/backend/groups.js'
import { forEachBackend } from '../helpers/backends.js'

forEachBackend(t, (t, space, kind) => {
  t.test('a member added on one backend is seen by another, both ways, until removed', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).groups, (await sp.backend()).groups]
    t.equal(await a.add('conv-1', 'alice'), true, 'newly a member')
    t.equal(await a.add('conv-1', 'alice'), false, 'adding again changes nothing')
    t.equal(await b.add('conv-1', 'bob'), true)
    t.equal(await b.add('team:soc', 'alice'), true)
    t.same(await b.members('conv-1', 100), { members: ['alice', 'bob'], total: 2 }, 'the group lists both, sorted')
    t.same((await a.groupsOf('alice')).sort(), ['conv-1', 'team:soc'], "the user's groups, from the other backend")
    t.same(await a.members('conv-1', 1), { members: ['alice'], total: 2 }, 'a listing is cut at its limit; the total stays whole')
    t.equal(await b.remove('conv-1', 'alice'), true, 'was a member')
    t.equal(await b.remove('conv-1', 'alice'), false, 'removing again changes nothing')
    t.same(await a.members('conv-1', 100), { members: ['bob'], total: 1 })
    t.same(await a.groupsOf('alice'), ['team:soc'])
    t.same(await a.members('nobody-here', 100), { members: [], total: 0 }, 'an unknown group has no members')
    t.same(await a.groupsOf('carol'), [], 'a user in no group')
  })

  t.test('an add and a remove at once, on two backends: the group\'s listing ends as the user\'s groups say', async (t) => {
    // The two sets are written apart (two hash slots); each call leaves the
    // listing as the user's set, which delivery follows, stands after it.
    const sp = space(t)
    const [a, b] = [(await sp.backend()).groups, (await sp.backend()).groups]
    const groups = Array.from({ length: 150 }, (_, i) => `race-${i}`)
    await Promise.all(groups.map(async (g, i) => {
      const [adder, remover] = i % 2 === 0 ? [a, b] : [b, a]
      await Promise.all([adder.add(g, 'racer'), remover.remove(g, 'racer')])
    }))
    const mine = new Set(await a.groupsOf('racer'))
    const astray: string[] = []
    for (const g of groups) if ((await b.members(g, 10)).members.includes('racer') !== mine.has(g)) astray.push(g)
    t.same(astray, [], `every listing agrees with the user's groups (${mine.size} of ${groups.length} ended as members)`)
  })

  t.test("the groups of many users read in one turn: each gets its own, in no group too", async (t) => {
    // A turn's new connections read their users' groups together (one call
    // on a standalone Redis, one command per user on a Cluster).
    const sp = space(t)
    const [a, b] = [(await sp.backend()).groups, (await sp.backend()).groups]
    const users = Array.from({ length: 40 }, (_, i) => `many-${i}`)
    await Promise.all(users.map(async (u, i) => { for (let g = 0; g < i % 4; g++) await a.add(`grp-${i}-${g}`, u) }))
    const read = await Promise.all([...users, users[5]!, 'nobody'].map(async (u) => await b.groupsOf(u)))
    t.same(read.slice(0, users.length).map((g) => g.sort()), users.map((_, i) => Array.from({ length: i % 4 }, (_, g) => `grp-${i}-${g}`)), "each user's own groups, in the order asked")
    t.same(read[users.length]!.sort(), ['grp-5-0'], 'a user asked twice in the turn is answered both times')
    t.same(read[users.length + 1], [], 'a user in no group: none')
  })

  t.test('more users in one turn than one call reads: each still gets its own', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).groups, (await sp.backend()).groups]
    const users = Array.from({ length: 600 }, (_, i) => `crowd-${i}`)
    const inGroups = users.filter((_, i) => i % 97 === 0)
    await Promise.all(inGroups.map(async (u) => await a.add(`of-${u}`, u)))
    const read = await Promise.all(users.map(async (u) => await b.groupsOf(u)))
    t.same(read, users.map((u, i) => i % 97 === 0 ? [`of-${u}`] : []), 'the members of each, in the order asked')
  })

  if (kind === 'redis') {
    t.test('a set Redis cannot read fails its turn\'s reads, and the next turn reads again; so after SCRIPT FLUSH', async (t) => {
      const sp = space(t)
      const g = (await sp.backend()).groups
      await g.add('grp', 'fine')
      const raw = sp.redis!.client()
      await raw.set(groupKeys(sp.keyPrefix).groupsOf('broken'), 'not a set')
      const turn = await Promise.allSettled([g.groupsOf('fine'), g.groupsOf('broken')])
      t.same(turn.map((r) => r.status), ['rejected', 'rejected'], 'every read of the turn is answered, with the error')
      t.match(String((turn[1] as PromiseRejectedResult).reason), /WRONGTYPE/)
      t.same(await g.groupsOf('fine'), ['grp'], 'a later turn reads')
      await raw.script('FLUSH')
      t.same(await g.groupsOf('fine'), ['grp'], 'the script is sent again once Redis has forgotten it')
    })

    t.test('users with large sets are read over several calls, each still gets its own', async (t) => {
      const sp = space(t)
      const g = (await sp.backend()).groups
      const raw = sp.redis!.client()
      // 12 users of 1,000 groups (12,000 names) and 3 in none: more than one call holds.
      const users = Array.from({ length: 15 }, (_, i) => `big-${i}`)
      const names = (u: string): string[] => Array.from({ length: 1000 }, (_, k) => `${u}-g${k}`)
      for (const u of users.slice(0, 12)) await raw.sadd(groupKeys(sp.keyPrefix).groupsOf(u), ...names(u))
      // Script calls, however ioredis sends them (EVALSHA, or EVAL after a SCRIPT FLUSH).
      const calls = async (): Promise<number> => [...(await raw.info('commandstats')).matchAll(/cmdstat_eval(?:sha)?:calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0)
      await g.groupsOf('nobody') // the script loaded: each call below is one EVALSHA
      const before = await calls()
      const read = await Promise.all(users.map(async (u) => await g.groupsOf(u)))
      t.same(read.map((r) => [...r].sort()), users.map((u, i) => i < 12 ? names(u).sort() : []), 'the members of each, in the order asked')
      t.equal(await calls() - before, 3, 'in calls of 4,096 names at most: users 0-3, 4-7, then the rest')
    })
  }

  t.test('names with the characters a group or a user may hold keep to their own sets', async (t) => {
    const sp = space(t)
    const g = (await sp.backend()).groups
    await g.add('a.b:c_d-e', 'user with spaces and ünïcode')
    await g.add('a', 'x')
    t.same(await g.members('a.b:c_d-e', 10), { members: ['user with spaces and ünïcode'], total: 1 })
    t.same(await g.groupsOf('user with spaces and ünïcode'), ['a.b:c_d-e'])
  })

  t.test(`a user is a member of at most ${MAX_GROUPS_PER_USER} groups through the API`, { timeout: 60_000 }, async (t) => {
    const sp = space(t)
    const g = (await sp.backend()).groups
    for (let i = 0; i < MAX_GROUPS_PER_USER; i += 100) {
      await Promise.all(Array.from({ length: 100 }, async (_, j) => await g.add(`g${i + j}`, 'busy')))
    }
    const refused = await g.add('one-more', 'busy').then(() => null, (err: unknown) => err)
    t.ok(refused instanceof GroupLimit, 'one more is refused')
    t.equal(await g.add('g0', 'busy'), false, 'a group it is in already is no new one')
    t.equal((await g.groupsOf('busy')).length, MAX_GROUPS_PER_USER)
    t.same(await g.members('one-more', 10), { members: [], total: 0 }, 'the refused one left no trace')
  })
})
