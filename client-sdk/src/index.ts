export * from './errors.js';
export * from './ids.js';
export * from './topics.js';
export * from './codec.js';
export * from './emitter.js';
export * from './sequencer.js';
export * from './client.js';
export * from './http.js';
