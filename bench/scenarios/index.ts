/**
 * The scenario registry: run in this order. To add one, write bench/scenarios/<name>.ts exporting
 * a `Scenario` (see bench/lib/types.ts) and list it here.
 */
import type { Scenario } from '../lib/types.js';
import { relay } from './relay.js';
import { latency } from './latency.js';
import { drain } from './drain.js';
import { connections } from './connections.js';
import { wire } from './wire.js';
import { cost } from './cost.js';
import { group } from './group.js';
import { mixed } from './mixed.js';
import { shards } from './shards.js';
import { media } from './media.js';
import { live } from './live.js';
import { e2ee } from './e2ee.js';

export const SCENARIOS: readonly Scenario[] = [relay, latency, drain, connections, wire, cost, group, mixed, shards, media, live, e2ee];
