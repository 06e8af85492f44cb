// k8s/: every manifest parses and validates against the Kubernetes schemas
// (kubernetes-models, and @kubernetes-models/gateway-api for the Gateway API
// CRDs), with unknown fields refused too: the models' validators accept extra
// keys, so each document is also type-checked by the TypeScript compiler
// against the models' interfaces, where an excess property is an error. Then
// the manifests are checked against each other and against the app: probes,
// drain timing, selectors, ports, names, and configuration variables.
import { randomBytes } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Namespace, ConfigMap, Secret, Service } from 'kubernetes-models/v1'
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { Ingress, NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import { Gateway, HTTPRoute } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1'
import { CONFIG_VARIABLES, ConfigError, loadConfig } from '../../src/config/index.js'
import { ROOT, forceExitMarginMs, read, readmeDeploySection, typeCheckSource, yamlDocs } from './lib.js'

interface Model { validate (): void }
interface Kind { model: new (data: any) => Model, typeModule: string, typeName: string }

// apiVersion/kind → the maintained model that validates it, and its TypeScript interface.
const KINDS: Record<string, Kind> = {
  'v1/Namespace': { model: Namespace, typeModule: 'kubernetes-models/v1/Namespace', typeName: 'INamespace' },
  'v1/ConfigMap': { model: ConfigMap, typeModule: 'kubernetes-models/v1/ConfigMap', typeName: 'IConfigMap' },
  'v1/Secret': { model: Secret, typeModule: 'kubernetes-models/v1/Secret', typeName: 'ISecret' },
  'v1/Service': { model: Service, typeModule: 'kubernetes-models/v1/Service', typeName: 'IService' },
  'apps/v1/Deployment': { model: Deployment, typeModule: 'kubernetes-models/apps/v1/Deployment', typeName: 'IDeployment' },
  'apps/v1/StatefulSet': { model: StatefulSet, typeModule: 'kubernetes-models/apps/v1/StatefulSet', typeName: 'IStatefulSet' },
  'autoscaling/v2/HorizontalPodAutoscaler': { model: HorizontalPodAutoscaler, typeModule: 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler', typeName: 'IHorizontalPodAutoscaler' },
  'policy/v1/PodDisruptionBudget': { model: PodDisruptionBudget, typeModule: 'kubernetes-models/policy/v1/PodDisruptionBudget', typeName: 'IPodDisruptionBudget' },
  'networking.k8s.io/v1/Ingress': { model: Ingress, typeModule: 'kubernetes-models/networking.k8s.io/v1/Ingress', typeName: 'IIngress' },
  'networking.k8s.io/v1/NetworkPolicy': { model: NetworkPolicy, typeModule: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy', typeName: 'INetworkPolicy' },
  'gateway.networking.k8s.io/v1/Gateway': { model: Gateway, typeModule: '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Gateway', typeName: 'IGateway' },
  'gateway.networking.k8s.io/v1/HTTPRoute': { model: HTTPRoute, typeModule: '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute', typeName: 'IHTTPRoute' },
}

interface Doc { file: string, index: number, obj: any }

const files = readdirSync(join(ROOT, 'k8s')).filter((f) => /\.ya?ml$/.test(f)).sort()
const kustomization = yamlDocs('k8s/kustomization.yaml')[0] as any
const docs: Doc[] = files.filter((f) => f !== 'kustomization.yaml')
  .flatMap((f) => yamlDocs(`k8s/${f}`).map((obj, index) => ({ file: f, index, obj: obj as any })))
const key = (o: any): string => `${o.apiVersion}/${o.kind}`
const where = (d: Doc): string => `${d.file}#${d.index} ${d.obj.kind}/${d.obj.metadata?.name}`
const find = (kind: string, name: string, file?: string): any => {
  const d = docs.find((x) => x.obj.kind === kind && x.obj.metadata?.name === name && (file === undefined || x.file === file))
  if (d === undefined) throw new Error(`no ${kind}/${name} in k8s/`)
  return d.obj
}
const matches = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v)

/**
 * Type-checks objects against the models' interfaces in one in-memory program;
 * returns the compiler's complaints per object (excess properties, wrong types,
 * missing required fields).
 */
function typeCheck (objs: Array<{ obj: unknown, kind: Kind }>): string[][] {
  const source = objs.map(({ obj, kind }, i) =>
    `import type { ${kind.typeName} as T${i} } from '${kind.typeModule}'\nexport const m${i}: T${i} = ${JSON.stringify(obj)}`).join('\n')
  const out: string[][] = objs.map(() => [])
  for (const { line, text } of typeCheckSource('test/deploy/__k8s_manifests__.ts', source)) {
    if (line < 0) { out.forEach((o) => o.push(`(program) ${text}`)); continue }
    out[Math.floor(line / 2)]!.push(text)
  }
  return out
}

t.test('every YAML in k8s/ parses and validates against the Kubernetes schemas', async (t) => {
  t.ok(docs.length >= 12, `${docs.length} documents in ${files.length} files`)
  const known = docs.filter((d) => KINDS[key(d.obj)] !== undefined)
  t.same(docs.filter((d) => KINDS[key(d.obj)] === undefined).map(where), [], 'every document is a kind with a model here')
  for (const d of known) {
    try {
      new (KINDS[key(d.obj)]!.model)(d.obj).validate()
      t.pass(`${where(d)} validates`)
    } catch (err) {
      t.fail(`${where(d)}: ${(err as Error).message}`)
    }
  }
  const complaints = typeCheck(known.map((d) => ({ obj: d.obj, kind: KINDS[key(d.obj)]! })))
  known.forEach((d, i) => t.same(complaints[i], [], `${where(d)}: no unknown or mistyped field`))
})

t.test('the validation refuses what a cluster would refuse', async (t) => {
  // Each check above must be able to fail: run them on broken copies.
  const dep = structuredClone(find('Deployment', 'herald'))
  dep.spec.template.spec.containers[0].ports[0].containerPort = 'http'
  t.throws(() => new Deployment(dep).validate(), 'a string containerPort is refused by the schema')
  const route = structuredClone(find('HTTPRoute', 'herald'))
  route.spec.rules[0].matches[0].path.type = 'Glob'
  t.throws(() => new HTTPRoute(route).validate(), 'an unknown HTTPRoute path match type is refused by the CRD schema')
  const typo = structuredClone(find('Deployment', 'herald'))
  typo.spec.template.spec.containers[0].readinesProbe = typo.spec.template.spec.containers[0].readinessProbe
  const [typoComplaints, okComplaints] = typeCheck([
    { obj: typo, kind: KINDS['apps/v1/Deployment']! },
    { obj: find('Deployment', 'herald'), kind: KINDS['apps/v1/Deployment']! },
  ])
  t.match(typoComplaints!.join('\n'), /readinesProbe/, 'a misspelt field is refused')
  t.same(okComplaints, [])
})

t.test('kustomization.yaml lists the manifests, in one namespace', async (t) => {
  t.equal(kustomization.kind, 'Kustomization')
  const resources = kustomization.resources as string[]
  const optional = ['secret.example.yaml', 'ingress.yaml']
  t.same([...resources, ...optional].sort(), files.filter((f) => f !== 'kustomization.yaml').sort(),
    'every manifest is a resource, except the Secret example and the Ingress alternative')
  t.notOk(resources.includes('secret.example.yaml'), 'the placeholder Secret is never applied')
  for (const d of docs) {
    if (d.obj.kind === 'Namespace') { t.equal(d.obj.metadata.name, kustomization.namespace); continue }
    t.equal(d.obj.metadata.namespace, kustomization.namespace, `${where(d)} is in ${kustomization.namespace}`)
  }
  const image = find('Deployment', 'herald').spec.template.spec.containers[0].image as string
  t.ok((kustomization.images as any[]).some((i) => i.name === image.split(':')[0]), 'kustomize `images` can set the Herald image')
})

t.test('ConfigMap and Secret example: variables the app knows; with real values substituted they boot production', async (t) => {
  const cm = find('ConfigMap', 'herald-config').data as Record<string, string>
  const secret = find('Secret', 'herald-secrets')
  const known = new Set(CONFIG_VARIABLES)
  t.same(Object.keys(cm).filter((k) => !known.has(k)), [], 'ConfigMap: no unknown variable')
  t.same(Object.keys(secret.stringData).filter((k: string) => !known.has(k)), [], 'Secret: no unknown variable')
  // No real secret: plain placeholders, nothing base64-encoded that could hide one.
  t.equal(secret.data, undefined, 'stringData only')
  for (const [k, v] of Object.entries(secret.stringData as Record<string, string>)) t.match(v, /REPLACE-ME/, `${k} is a placeholder`)
  const dep = find('Deployment', 'herald')
  const c = dep.spec.template.spec.containers[0]
  t.same((c.env as any[]).map((e) => e.name).filter((n: string) => !known.has(n)), [], 'Deployment env: no unknown variable')
  t.same(c.envFrom, [{ configMapRef: { name: 'herald-config' } }, { secretRef: { name: 'herald-secrets' } }], 'envFrom: the ConfigMap, then the Secret (which wins)')
  // Applied unchanged, the example must not run: each placeholder is refused,
  // naming its variable (checked one at a time, the others real).
  const real = realSecretValues()
  t.same(Object.keys(real).sort(), Object.keys(secret.stringData).sort(), 'secret.example.yaml documents a command for every key')
  const refusal = (env: Record<string, string>): unknown => { try { loadConfig(env); return undefined } catch (err) { return err } }
  for (const k of Object.keys(secret.stringData as Record<string, string>)) {
    const err = refusal({ ...cm, ...real, [k]: secret.stringData[k], SERVER_ID: 'herald-7d9c8b6f5-x2x4q' })
    t.ok(err instanceof ConfigError && err.variable === k, `the placeholder ${k} is refused by name: ${String(err)}`)
  }
  const placeholders = refusal({ ...cm, ...secret.stringData })
  t.ok(placeholders instanceof ConfigError, `the example as shipped does not boot: ${String(placeholders)}`)
  const env: Record<string, string> = { ...cm, ...real, SERVER_ID: 'herald-7d9c8b6f5-x2x4q' } // SERVER_ID: a pod name
  const config = loadConfig(env)
  t.same(config.apiKeys, real.API_KEYS!.split(','), 'the generated API key is the one configured')
  t.equal(config.env, 'production')
  t.equal(config.host, '0.0.0.0')
  t.equal(config.jwt.generated, false)
  t.same(config.allowedOrigins, ['https://app.example.com'])
  const { JWT_SECRET: _s, ...cmOnly } = env
  let refused: unknown
  try { loadConfig(cmOnly) } catch (err) { refused = err }
  t.ok(refused instanceof ConfigError && refused.variable === 'JWT_SECRET', 'without the Secret a pod refuses to boot, naming JWT_SECRET')
  // Redis: the ConfigMap's URL is the redis.yaml Service.
  const url = new URL(config.redis!.url!)
  const redisSvc = find('Service', url.hostname)
  t.ok((redisSvc.spec.ports as any[]).some((p) => p.port === Number(url.port || 6379)), `${url.host} is a port of Service ${url.hostname}`)
})

/**
 * Values made the way secret.example.yaml's comment says to make them
 * (`--from-literal=KEY="$(openssl rand -base64|-hex N)"`), with node's crypto
 * standing in for openssl: same bytes, same encoding.
 */
function realSecretValues (): Record<string, string> {
  const text = read('k8s/secret.example.yaml')
  const out: Record<string, string> = {}
  for (const m of text.matchAll(/--from-literal=([A-Z_]+)="\$\(openssl rand -(base64|hex) (\d+)\)"/g)) {
    out[m[1]!] = randomBytes(Number(m[3])).toString(m[2] as 'base64' | 'hex')
  }
  return out
}

t.test('Deployment: probes, drain and rollout', async (t) => {
  const dep = find('Deployment', 'herald')
  const cm = find('ConfigMap', 'herald-config').data as Record<string, string>
  const pod = dep.spec.template.spec
  const c = pod.containers[0]
  const port = (c.ports as any[]).find((p) => p.name === 'http')
  t.equal(port?.containerPort, loadConfig({ ...cm, JWT_SECRET: 'x'.repeat(32) }).port, 'the container port is the PORT the app listens on')
  t.same(c.readinessProbe.httpGet, { path: '/ws/health', port: 'http' }, 'readiness on /ws/health')
  t.same(c.livenessProbe.httpGet, { path: '/ws/health?probe=live', port: 'http' }, 'liveness on ?probe=live (a Redis outage restarts nothing)')
  t.same(c.startupProbe.httpGet, { path: '/ws/health?probe=live', port: 'http' }, 'a startup probe')
  t.ok(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= 30, 'the startup probe allows 30 s to boot')
  const preStop = c.lifecycle.preStop.sleep?.seconds as number
  t.ok(preStop >= 1, `preStop pauses ${preStop} s before SIGTERM`)
  const drainS = Number(cm.DRAIN_TIMEOUT) / 1000
  const need = preStop + drainS + forceExitMarginMs() / 1000
  t.ok(pod.terminationGracePeriodSeconds >= need, `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} ≥ preStop ${preStop} + DRAIN_TIMEOUT ${drainS} + force-exit margin ${forceExitMarginMs() / 1000}`)
  t.equal(dep.spec.strategy.type, 'RollingUpdate')
  t.equal(dep.spec.strategy.rollingUpdate.maxUnavailable, 0, 'no pod is taken down before its replacement is ready')
  t.ok(dep.spec.strategy.rollingUpdate.maxSurge >= 1, 'surge makes room for the replacement')
  t.equal(dep.spec.replicas, undefined, 'replicas left to the HPA')
  t.ok(matches(dep.spec.selector.matchLabels, dep.spec.template.metadata.labels), 'the selector selects the pod template')
  t.equal(pod.securityContext.runAsNonRoot, true)
  t.equal(pod.securityContext.runAsUser, 1000, 'uid of the image\'s `node` user (Dockerfile USER node)')
  t.match(read('Dockerfile'), /^USER node$/m)
  t.equal(c.securityContext.readOnlyRootFilesystem, true)
  t.equal(c.securityContext.allowPrivilegeEscalation, false)
  t.same(c.securityContext.capabilities.drop, ['ALL'])
  t.equal(pod.enableServiceLinks, false, 'no injected service-link variables in the environment')
  t.same(c.env.find((e: any) => e.name === 'SERVER_ID')?.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } }, 'SERVER_ID is the pod name')
})

t.test('Service, HPA and PDB select the Deployment', async (t) => {
  const dep = find('Deployment', 'herald')
  const labels = dep.spec.template.metadata.labels
  const svc = find('Service', 'herald')
  t.ok(matches(svc.spec.selector, labels), 'the Service selects Herald pods')
  const http = (svc.spec.ports as any[]).find((p) => p.name === 'http')
  t.equal(http.appProtocol, 'kubernetes.io/ws', 'the Service declares WebSocket')
  t.ok((dep.spec.template.spec.containers[0].ports as any[]).some((p) => p.name === http.targetPort), 'targetPort names a container port')
  const hpa = find('HorizontalPodAutoscaler', 'herald')
  t.same(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'herald' })
  t.ok(hpa.spec.minReplicas >= 3 && hpa.spec.maxReplicas > hpa.spec.minReplicas)
  t.ok((hpa.spec.metrics as any[]).some((m) => m.type === 'Resource' && m.resource.name === 'cpu'), 'scales on CPU')
  t.ok(hpa.spec.behavior.scaleDown.stabilizationWindowSeconds >= 300, 'scales down slowly: each removed pod makes its clients reconnect')
  t.ok(dep.spec.template.spec.containers[0].resources.requests.cpu, 'CPU requests exist, so CPU utilization is defined')
  const pdb = find('PodDisruptionBudget', 'herald')
  t.ok(matches(pdb.spec.selector.matchLabels, labels), 'the PDB covers Herald pods')
  t.ok(pdb.spec.maxUnavailable >= 1 && pdb.spec.maxUnavailable < hpa.spec.minReplicas, 'node drains proceed, one pod at a time')
})

t.test('HTTPRoute (Gateway API) and the Ingress alternative route to the Service, WebSockets without a request timeout', async (t) => {
  const svc = find('Service', 'herald')
  const route = find('HTTPRoute', 'herald')
  const gw = find('Gateway', 'herald')
  t.same(route.spec.parentRefs, [{ name: gw.metadata.name }], 'attached to the Gateway of gateway.yaml')
  t.same(route.spec.hostnames, [...new Set((gw.spec.listeners as any[]).map((l) => l.hostname))])
  const rules = route.spec.rules as any[]
  for (const r of rules) for (const b of r.backendRefs) t.ok(b.name === svc.metadata.name && (svc.spec.ports as any[]).some((p) => p.port === b.port), `backend ${b.name}:${b.port} is the Service`)
  const ruleFor = (path: string): any => rules.find((r) => (r.matches as any[]).some((m) => path.startsWith(m.path.value)))
  for (const p of ['/ws/events', '/ws/admin', '/ws/health', '/socket.io/']) t.equal(ruleFor(p)?.timeouts?.request, '0s', `${p}: routed, request timeout disabled`)
  for (const p of ['/api/events', '/docs']) t.ok(ruleFor(p), `${p} routed`)
  t.notOk(ruleFor('/metrics'), '/metrics is not exposed through the Gateway')
  const ing = find('Ingress', 'herald')
  const paths = (ing.spec.rules as any[]).flatMap((r) => r.http.paths)
  for (const p of paths) t.ok((svc.spec.ports as any[]).some((sp) => sp.name === p.backend.service.port.name) && p.backend.service.name === 'herald', `Ingress ${p.path} → Service herald`)
  t.same(paths.map((p) => p.path).sort(), ['/api/', '/docs', '/socket.io/', '/ws/'])
  t.equal(ing.metadata.annotations['haproxy.org/check-http'], '/ws/health', 'the Ingress controller health-checks /ws/health')
})

t.test('Redis: StatefulSet behind its governing Service, reachable from Herald only', async (t) => {
  const sts = find('StatefulSet', 'herald-redis')
  const svc = find('Service', sts.spec.serviceName)
  t.equal(svc.spec.clusterIP, 'None', 'headless governing Service')
  t.ok(matches(svc.spec.selector, sts.spec.template.metadata.labels))
  t.ok(matches(sts.spec.selector.matchLabels, sts.spec.template.metadata.labels))
  const np = find('NetworkPolicy', 'herald-redis')
  t.ok(matches(np.spec.podSelector.matchLabels, sts.spec.template.metadata.labels), 'the policy guards the Redis pods')
  t.ok(matches(np.spec.ingress[0].from[0].podSelector.matchLabels, find('Deployment', 'herald').spec.template.metadata.labels), 'and lets Herald pods in')
  t.equal(sts.spec.template.spec.securityContext.runAsNonRoot, true)
})

t.test('the README Kubernetes steps match the manifests', async (t) => {
  const section = readmeDeploySection()
  for (const f of files.filter((f) => f !== 'kustomization.yaml')) t.match(section, `\`${f}\``, `the README describes k8s/${f}`)
  t.match(section, 'kubectl apply -f k8s/namespace.yaml')
  t.match(section, 'kubectl apply -k k8s/')
  const ns = find('Namespace', kustomization.namespace).metadata.name as string
  for (const m of section.matchAll(/kubectl -n (\S+)/g)) t.equal(m[1], ns, 'commands use the manifests\' namespace')
  const create = /kubectl -n \S+ create secret generic (\S+) \\\n((?:\s+--from-literal=\S+=.*\n)+)/.exec(section)
  t.ok(create, 'the README creates the Secret')
  const secretName = find('Deployment', 'herald').spec.template.spec.containers[0].envFrom.find((e: any) => e.secretRef).secretRef.name
  t.equal(create?.[1], secretName, 'with the name the Deployment reads')
  const keys = [...(create?.[2] ?? '').matchAll(/--from-literal=([A-Z_]+)=/g)].map((m) => m[1])
  t.same(keys.sort(), Object.keys(find('Secret', secretName).stringData).sort(), 'the keys of secret.example.yaml')
  t.match(section, /rollout status deployment\/herald\b/)
  t.match(section, /kubectl -n herald exec deploy\/herald -- node dist\/cli\.js token --sub demo-user\)/, 'the token is minted by the image\'s herald command')
  t.match(section, `wss://${find('HTTPRoute', 'herald').spec.hostnames[0]}/ws/events`, 'the client connects to the route\'s hostname')
})
