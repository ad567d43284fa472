/** The three-gateway tests ({@link describeThreeGateways}) on one redis-server. */
import { redisStore } from "@tokenpool/store-redis";
import { startRedisServer } from "@tokenpool/testing/redis-server";
import { describeThreeGateways } from "./three-gateways.js";

describeThreeGateways({
  name: "Redis",
  async start(tag) {
    const redis = await startRedisServer();
    const prefix = `tp-${tag}`;
    return {
      spec: `${redis.url}?prefix=${prefix}`,
      open: () => redisStore({ redis: redis.url, prefix }),
      stop: () => redis.stop(),
    };
  },
});
