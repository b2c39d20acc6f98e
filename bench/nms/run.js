// node-media-server as the fan-out reference of bench/hub_fanout.py.
//
//   node bench/nms/run.js --http-port N --rtmp-port M --data DIR
//
// The same server bin/app.js starts, configured for a benchmark: loopback only, no HTTPS,
// no web admin, no REST API / JWT (nothing to authenticate), no recording, logs at "info"
// (one line per session, none per packet). Publish with WS-FLV (subprotocol "publisher")
// or RTMP to /live/<name>; play HTTP-FLV at http://127.0.0.1:N/live/<name>.flv.
// Prints one JSON line {"ready": true, ...} once both listeners are up.
"use strict";

const path = require("path");
const { parseArgs } = require("util");
const NodeMediaServer = require("node-media-server");
const logger = require("node-media-server/src/core/logger.js");
const Package = require("node-media-server/package.json");

const { values } = parseArgs({
  options: {
    "http-port": { type: "string" },
    "rtmp-port": { type: "string" },
    data: { type: "string" },
  },
  strict: true,
});
const httpPort = Number(values["http-port"]);
const rtmpPort = Number(values["rtmp-port"]);
if (!Number.isInteger(httpPort) || !Number.isInteger(rtmpPort) || !values.data) {
  console.error("usage: node run.js --http-port N --rtmp-port M --data DIR");
  process.exit(2);
}

const config = {
  bind: "127.0.0.1",
  notify: { url: "" },
  store: { path: path.join(values.data, "store"), maxHistory: 1000 },
  auth: { play: false, publish: false, secret: "bench" },
  rtmp: { port: rtmpPort },
  http: { port: httpPort },
  webadmin: { enable: false },
  record: { auto: false, path: path.join(values.data, "record") },
};

const nms = new NodeMediaServer(config, path.join(values.data, "config.json"));
logger.level = "info"; // the constructor sets "debug"
nms.run().then(() => {
  console.log(JSON.stringify({ ready: true, version: Package.version, node: process.version,
    http_port: httpPort, rtmp_port: rtmpPort, pid: process.pid }));
});

const stop = () => { nms.stop().finally(() => process.exit(0)); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
