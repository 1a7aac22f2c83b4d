export { createBrokerNode, DEFAULT_BROKER_OPTIONS, type BrokerDeps, type BrokerNode, type BrokerOptions } from './broker.js';
export { createLimits, DEFAULT_LIMITS, type BrokerLimits, type Limits } from './limits.js';
export { Batcher, BatcherClosedError, type BatcherOptions } from './batcher.js';
export { decidePublish, decideSubscribe } from './acl.js';
export { filterServerBound, SINK_TOPIC } from './mq-filter.js';
export type {
  AuthResult, DeliveryBus, DeviceAuthenticator, DeviceRoutes, IngestAck, IngestMessage, IngestRead, IngestSink, PositionReader,
  LiveConnection, LiveSink, StoredChatMessage, BrokerObserver, ClientErrors,
} from './ingest.js';
export { NO_OBSERVER } from './ingest.js';
export { createDeliveryAgent, toMsgEnvelope, type DeliveryAgent, type DeliveryAgentOptions } from './delivery-agent.js';
export { liveOnlyPersistence, isLiveOnlyPacket, LIVE_ONLY_KINDS, AEDES_VERSION } from './aedes-internals.js';
export { connectedAt } from './connection-token.js';
