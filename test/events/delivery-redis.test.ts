// test/events/delivery.test.ts again, on a node whose broker is a private
// redis-server instead of the in-process one: the audience and pattern rules
// must hold the same on both.
process.env.HERALD_TEST_BROKER = 'redis'
await import('./delivery.test.js')
