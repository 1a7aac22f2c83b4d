/**
 * The store contracts (one suite per port) on MongoDB. Runs only when MONGO_URL points at a server
 * (a replica set, for the majority write concern), e.g. MONGO_URL=mongodb://localhost:27017/?replicaSet=rs0.
 * Every test gets its own database, dropped afterwards.
 */
import { describe } from 'vitest';
import { MongoClient } from 'mongodb';
import { randomIdBody } from '@parley/client-sdk/protocol';
import { createMongoStore } from '../services/src/store/mongo.js';
import { storeContracts } from './contract/index.js';

const url = process.env.MONGO_URL;

describe.skipIf(!url)('MongoDB store', () => {
  storeContracts('Store contracts: MongoDB', async () => {
    const mongoUrl = url!;
    // Database names may not contain '-' in every deployment; keep [A-Za-z0-9_].
    const dbName = `parley_test_${randomIdBody(10).replace(/[^A-Za-z0-9]/g, '_')}`;
    const store = await createMongoStore({ url: mongoUrl, dbName });
    return {
      store,
      cleanup: async () => {
        await store.close();
        const admin = new MongoClient(mongoUrl);
        try {
          await admin.connect();
          await admin.db(dbName).dropDatabase();
        } finally {
          await admin.close();
        }
      },
    };
  });
});
