/**
 * The three-gateway tests ({@link describeThreeGateways}) on a Redis Cluster of three masters:
 * each `tokenpool serve` gets the cluster's `redis://host1:port1,host2:port2,host3:port3` URL.
 */
import { redisStore } from "@tokenpool/store-redis";
import { startRedisCluster } from "@tokenpool/testing/redis-server";
import { describeThreeGateways } from "./three-gateways.js";

describeThreeGateways({
  name: "Redis Cluster",
  async start(tag) {
    const cluster = await startRedisCluster();
    const prefix = `tp-${tag}`;
    return {
      spec: `${cluster.url}?prefix=${prefix}`,
      open: () => redisStore({ redis: cluster.url, prefix }),
      stop: () => cluster.stop(),
    };
  },
});
