export * from './errors.js';
export * from './ids.js';
export * from './topics.js';
export * from './codec.js';
