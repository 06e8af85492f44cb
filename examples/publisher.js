// Publishing from a service over a node's HTTP API: an event of each family
// and two notifications for demo-user (the user of the token `npm start`
// prints, so examples/client.js shows them), then close() and exit. Against `npm start`, with
// the API key its banner printed (in the curl command):
//
//   HERALD_API_KEY=... node examples/publisher.js
//
// HERALD_URL (default http://127.0.0.1:3000) names another node. In your own
// project: the packed @herald/publisher (README, "Installing the packages").
import { HeraldPublisher } from '@herald/publisher'

if (!process.env.HERALD_API_KEY) throw new Error('set HERALD_API_KEY to one of the nodes\' API_KEYS: `npm start` prints its generated one in the curl command')

const herald = new HeraldPublisher({ url: process.env.HERALD_URL ?? 'http://127.0.0.1:3000', apiKey: process.env.HERALD_API_KEY })

try {
  const id = await herald.publishAuthenticationEvent('authentication.login.success', 'demo-user', 'demo-session', { ip: '192.0.2.10' })
  console.log('published', id)
  await herald.publishSecurityEvent('security.high_risk.detected', 'demo-user', 'demo-session', { riskScore: 85 })
  await herald.publishSystemEvent('system.maintenance.scheduled', { at: '2026-12-01T02:00:00Z' })
  await herald.sendUserNotification('demo-user', 'warning', 'Unusual login', 'We saw a login from a new device.')
  await herald.sendBroadcastNotification('info', 'Maintenance', 'Tonight from 2:00 to 4:00 UTC.')
  // The receipt: the event's stream and its position there (as the API's 202).
  const receipt = await herald.publishWithReceipt('session.created', { userId: 'demo-user', sessionId: 'demo-session-2' })
  console.log('receipt', JSON.stringify(receipt))
} finally {
  // Refuses further publishes and waits for those in flight.
  await herald.close()
}
