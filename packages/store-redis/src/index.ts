export * as lua from "./lua/scripts.js";
export { type RedisStoreOptions, redisStore } from "./redis-store.js";
