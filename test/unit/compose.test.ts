/**
 * docker-compose.yml and the Dockerfile, checked without Docker (no daemon runs on these
 * machines): every Parley service's environment passes the platform's own config schema, names
 * valid roles and has a health check that can answer for those roles; every build target is a
 * Dockerfile stage; the runtime stage runs the compiled entry point as a non-root user without
 * tsx; the load balancer's configuration points at the broker services' MQTT and WebSocket ports.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig } from '../../services/src/config.js';

const ROOT = join(import.meta.dirname, '..', '..');
const read = (f: string): string => readFileSync(join(ROOT, f), 'utf8');

interface Service {
  image?: string;
  build?: { context: string; target?: string };
  environment?: Record<string, string | number>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  volumes?: string[];
  ports?: string[];
  entrypoint?: string[];
}

const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Service> };
const services = compose.services;
const dockerfile = read('Dockerfile');

/** Stages in order, with their lines. */
function stages(text: string): Array<{ name: string; lines: string[] }> {
  const out: Array<{ name: string; lines: string[] }> = [];
  for (const line of text.split('\n')) {
    const m = /^FROM\s+\S+(?:\s+AS\s+(\S+))?/i.exec(line);
    if (m) out.push({ name: m[1] ?? String(out.length), lines: [] });
    else if (out.length && line.trim() && !line.trim().startsWith('#')) out.at(-1)!.lines.push(line.trim());
  }
  return out;
}

/** The runtime stage's ENV (KEY=value pairs), which a container starts with. */
function imageEnv(lines: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const l of lines.filter((x) => x.startsWith('ENV '))) {
    for (const m of l.slice(4).matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!;
  }
  return env;
}

const parleyServices = Object.entries(services).filter(([, s]) => s.image === 'parley:latest');

/**
 * Compose's variable interpolation, as `docker compose` does it from the shell or `.env`: `$$` is a
 * dollar; `${VAR}` / `$VAR` (empty when unset), `${VAR:-default}` / `${VAR-default}`, and
 * `${VAR:?message}` / `${VAR?message}`, which stop compose with the message when VAR is unset (or
 * empty, with the colon).
 */
function interpolate(value: string, shell: Record<string, string | undefined>): string {
  return value.replace(/\$\$|\$\{(\w+)(?:(:?)([-?])([^}]*))?\}|\$(\w+)/g, (all, name?: string, colon?: string, op?: string, arg?: string, bare?: string) => {
    if (all === '$$') return '$';
    const v = shell[(name ?? bare)!];
    const missing = v === undefined || (colon === ':' && v === '');
    if (op === '-') return missing ? arg! : v!;
    if (op === '?') {
      if (missing) throw new Error(`required variable ${name} is missing a value: ${arg}`);
      return v!;
    }
    return v ?? '';
  });
}

/** What an operator exports before `docker compose up` (docs/OPERATIONS.md). */
const SHELL = { PARLEY_ADMIN_TOKEN: 'an-operator-chosen-admin-token-of-40-chars' };

/** A service's environment as its container gets it: the image's ENV, then compose's, interpolated. */
const envOf = (base: Record<string, string>, s: Service, shell: Record<string, string | undefined> = SHELL): Record<string, string> =>
  Object.fromEntries(Object.entries({ ...base, ...s.environment }).map(([k, v]) => [k, interpolate(String(v), shell)]));

describe('Dockerfile', () => {
  const all = stages(dockerfile);
  const runtime = all.at(-1)!;

  it('is multi-stage and its runtime stage runs compiled JavaScript as a non-root user, with a health check', () => {
    expect(all.length).toBeGreaterThanOrEqual(3);
    expect(runtime.name).toBe('runtime');
    const user = runtime.lines.find((l) => l.startsWith('USER '));
    expect(user).toBeDefined();
    expect(user).not.toMatch(/root|\b0\b/);
    const cmd = runtime.lines.find((l) => l.startsWith('CMD '))!;
    expect(JSON.parse(cmd.slice(4))).toEqual(['node', 'dist/services/src/main.js']);
    expect(existsSync(join(ROOT, 'services/src/main.ts'))).toBe(true);
    // No TypeScript loader or dev dependencies at runtime.
    expect(runtime.lines.join('\n')).not.toMatch(/tsx|--conditions=parley-source/);
    expect(all.find((s) => s.name === 'prod-deps')?.lines.join('\n')).toMatch(/--omit=dev/);
    const health = runtime.lines.find((l) => l.startsWith('HEALTHCHECK '))!;
    expect(health).toContain('dist/scripts/healthcheck.js');
    const build = JSON.parse(read('tsconfig.build.json')) as { include: string[] };
    expect(build.include).toContain('scripts/healthcheck.ts');
    expect(build.include).toEqual(expect.arrayContaining(['broker/src', 'services/src']));
  });

  it('builds what `npm run build` builds', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    expect(pkg.scripts.build).toContain('tsconfig.build.json');
    expect(all.find((s) => s.name === 'build')?.lines).toContain('RUN npm run build');
  });
});

describe('docker-compose.yml', () => {
  const all = stages(dockerfile);
  const baseEnv = imageEnv(all.at(-1)!.lines);

  it('has the cluster of the issue: Redis with AOF, a MongoDB replica set, MinIO with its bucket, two brokers behind a balancer, the API, two workers', () => {
    expect(services.redis?.environment ?? {}).toBeDefined();
    expect(JSON.stringify(services.redis)).toContain('--appendonly');
    expect(JSON.stringify(services.mongo)).toContain('--replSet');
    expect(services['minio-init']?.entrypoint?.join(' ')).toMatch(/mc mb .*parley-media/);
    const roles = parleyServices.map(([name, s]) => [name, s.environment?.PARLEY_ROLES]);
    expect(roles).toEqual(expect.arrayContaining([['broker1', 'broker'], ['broker2', 'broker'], ['api', 'api'], ['workers', 'workers']]));
    expect((services.workers as { deploy?: { replicas?: number } }).deploy?.replicas).toBe(2);
  });

  it.each(parleyServices)('%s: its environment passes the config schema, its build target is a Dockerfile stage, it has a health check that can answer', (_name, s) => {
    const env = envOf(baseEnv, s);
    const cfg = parseConfig(env);
    expect(cfg.roles.length).toBeGreaterThan(0);
    expect(all.map((x) => x.name)).toContain(s.build?.target);
    expect(s.healthcheck?.test).toEqual(['CMD', 'node', 'dist/scripts/healthcheck.js']);
    // Without the API role the health check asks the metrics listener.
    if (!cfg.roles.includes('api')) expect(env.PARLEY_METRICS_PORT).toMatch(/^\d+$/);
    // Stateful parts live outside the container: Redis and the store are external.
    expect(env.PARLEY_REDIS_URL).toMatch(/^redis:\/\/redis:/);
    expect(cfg.store.kind).toBe('mongo');
    for (const dep of Object.keys(s.depends_on ?? {})) expect(services[dep], dep).toBeDefined();
  });

  it('the API takes the admin token from the environment: every replica has the same one, and compose refuses to start without it', () => {
    const api = services.api!;
    expect(String(api.environment?.PARLEY_ADMIN_TOKEN)).toMatch(/^\$\{PARLEY_ADMIN_TOKEN:\?[^}]+\}$/);
    expect(parseConfig(envOf(baseEnv, api)).adminToken).toBe(SHELL.PARLEY_ADMIN_TOKEN);
    for (const shell of [{}, { PARLEY_ADMIN_TOKEN: '' }]) {
      expect(() => envOf(baseEnv, api, shell)).toThrow(/PARLEY_ADMIN_TOKEN.*32\+ characters/);
    }
    // A token too short for the schema is refused by the API itself.
    expect(() => parseConfig(envOf(baseEnv, api, { PARLEY_ADMIN_TOKEN: 'short' }))).toThrow(/PARLEY_ADMIN_TOKEN/);
    // The interpolation itself, as compose does it.
    expect(interpolate('a$$b ${X:-d} ${Y-e} $X', { X: '', Y: '' })).toBe('a$b d  ');
  });

  it('every long-running service has a health check, and every dependency exists', () => {
    for (const [name, s] of Object.entries(services)) {
      if (name !== 'minio-init') expect(s.healthcheck, name).toBeDefined();
      for (const dep of Object.keys(s.depends_on ?? {})) expect(services[dep], `${name} -> ${dep}`).toBeDefined();
    }
  });

  it("the load balancer's configuration sends MQTT and WebSocket to the broker services' ports", () => {
    const lb = services.lb!;
    const mount = lb.volumes!.find((v) => v.includes('haproxy.cfg'))!;
    const cfgText = read(mount.split(':')[0]!.replace(/^\.\//, ''));
    const brokers = parleyServices.filter(([, s]) => s.environment?.PARLEY_ROLES === 'broker').map(([n]) => n);
    const env = (n: string): Record<string, string> => envOf(baseEnv, services[n]!);
    for (const b of brokers) {
      const cfg = parseConfig(env(b));
      expect(cfgText).toContain(`server ${b} ${b}:${cfg.mqttPort}`);
      expect(cfgText).toContain(`server ${b} ${b}:${cfg.wsPort}`);
    }
    expect(lb.ports).toEqual(['1883:1883', '8083:8083']);
  });
});
